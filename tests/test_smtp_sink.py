"""The development SMTP server (ops/smtp-sink) itself: what it stores is what the client sent, byte for byte
(LF line ends), with the envelope in three headers at the end of the header block; refusals by domain; whole
messages only in new/, named in arrival order."""
import email
import os
import smtplib
import socket

import pytest

from mailkit import Sink, free_port


@pytest.fixture
def sink(tmp_path):
    s = Sink(free_port(), tmp_path / "mail")
    yield s
    s.stop()


def stored(sink):
    new = os.path.join(sink.mdir, "new")
    out = []
    for name in sorted(os.listdir(new)):
        with open(os.path.join(new, name), "rb") as f:
            out.append(f.read())
    return out


def envelope_lines(raw):
    return [line for line in raw.split(b"\n") if line.startswith((b"X-Peer: ", b"X-MailFrom: ", b"X-RcptTo: "))]


def test_a_message_is_stored_as_sent_with_its_envelope_after_its_headers(sink):
    body = ("Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nFrom: a@sender.test\r\nTo: b@example.test\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            "Grüße\r\n.a line that starts with a dot\r\n\r\nFrom the middle of a line\r\nlast line\r\n")
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=30) as c:
        refused = c.sendmail("a@sender.test", ["b@example.test", "c@example.test"], body.encode())
    assert refused == {}
    [raw] = stored(sink)
    head, rest = raw.split(b"\n\n", 1)
    sent_head, sent_rest = body.encode().replace(b"\r\n", b"\n").split(b"\n\n", 1)
    # The client's headers in their order, then the envelope's; the body byte for byte (dot-unstuffed, 8-bit).
    assert rest == sent_rest
    assert head.split(b"\n")[:5] == sent_head.split(b"\n")
    peer, mail_from, rcpt_to = head.split(b"\n")[5:]
    assert peer.startswith(b"X-Peer: ('127.0.0.1', ")
    assert mail_from == b"X-MailFrom: a@sender.test"
    assert rcpt_to == b"X-RcptTo: b@example.test, c@example.test"
    assert b"\r" not in raw
    assert os.listdir(os.path.join(sink.mdir, "tmp")) == []


def test_messages_without_a_body_or_without_headers_get_the_envelope_too(sink):
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=30) as c:
        c.sendmail("a@sender.test", ["one@example.test"], b"Subject: headers only")
        c.sendmail("a@sender.test", ["two@example.test"], b"\r\nno headers at all\r\n")
    headers_only, no_headers = stored(sink)
    assert headers_only.startswith(b"Subject: headers only\nX-Peer: ")
    assert headers_only.endswith(b"X-RcptTo: one@example.test\n")
    assert no_headers.startswith(b"X-Peer: ")
    assert no_headers.endswith(b"X-RcptTo: two@example.test\n\nno headers at all\n")
    assert len(envelope_lines(headers_only)) == len(envelope_lines(no_headers)) == 3


@pytest.mark.parametrize("sent", [
    b"Subject: no empty line\r\nthis line is the body\r\n",  # the body starts at the first line that is no header
    b"Hello\r\n\r\nno headers, and the first line is none\r\n",
    b"Subject: a blank line\r\n \r\nis a continuation, not the end of the headers\r\n",
    b"Subject: folded\r\n over two lines\r\n\r\nbody\r\n",
])
def test_the_envelope_is_where_a_mail_reader_finds_it_whatever_the_message_looks_like(sink, sent):
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=30) as c:
        c.sendmail("a@sender.test", ["odd@example.test"], sent)
    [raw] = stored(sink)
    msg = email.message_from_bytes(raw)
    assert msg["X-RcptTo"] == "odd@example.test" and msg["X-MailFrom"] == "a@sender.test", raw
    # Nothing of the message is lost or moved: without the envelope's lines (and the empty line added
    # after them where the message had none), it is what was sent.
    lines = raw.split(b"\n")
    at = lines.index(b"X-RcptTo: odd@example.test")
    rest = lines[:at - 2] + lines[at + 1:]
    if b"\n".join(rest) != sent.replace(b"\r\n", b"\n"):
        assert lines[at + 1] == b"" and b"\n".join(lines[:at - 2] + lines[at + 2:]) == sent.replace(b"\r\n", b"\n")


def test_the_test_domains_are_refused_and_nothing_is_stored_for_them(sink):
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=30) as c:
        c.ehlo()
        c.mail("a@sender.test")
        assert c.rcpt("x@bounce.test")[0] == 550
        assert c.rcpt("x@tempfail.test")[0] == 451
        assert c.rcpt("x@example.test")[0] == 250
        assert c.data(b"Subject: one accepted recipient\r\n\r\nbody\r\n")[0] == 250
    [raw] = stored(sink)
    assert b"X-RcptTo: x@example.test\n" in raw and b"bounce.test" not in raw and b"tempfail.test" not in raw


def reply(f):
    """One SMTP reply read from f, a multi-line one whole: its lines, without their ends."""
    lines = []
    while not lines or lines[-1][3:4] == b"-":
        line = f.readline()
        assert line, f"connection closed after {lines}"
        lines.append(line.rstrip(b"\r\n"))
    return lines


def codes(f, n):
    """The codes of the next n replies."""
    return [int(reply(f)[-1][:3]) for _ in range(n)]


def test_it_offers_pipelining_and_answers_pipelined_commands_in_order(sink):
    """RFC 2920, as real servers offer it (and libesmtp then sends RCPT and DATA without waiting for each
    reply): MAIL, the RCPTs and DATA in one write, then the message and the next transaction's commands in
    another."""
    with socket.create_connection(("127.0.0.1", sink.port), timeout=30) as s:
        f = s.makefile("rb")
        assert codes(f, 1) == [220]
        s.sendall(b"EHLO client.test\r\n")
        ehlo = reply(f)
        assert all(line.startswith(b"250") for line in ehlo), ehlo
        assert b"PIPELINING" in {line[4:].split(b" ")[0] for line in ehlo[1:]}, ehlo
        s.sendall(b"MAIL FROM:<a@sender.test>\r\nRCPT TO:<x@bounce.test>\r\nRCPT TO:<one@example.test>\r\n"
                  b"DATA\r\n")
        assert codes(f, 4) == [250, 550, 250, 354]
        s.sendall(b"Subject: first\r\n\r\nbody\r\n.\r\nMAIL FROM:<a@sender.test>\r\n"
                  b"RCPT TO:<two@example.test>\r\nDATA\r\n")
        assert codes(f, 4) == [250, 250, 250, 354]
        s.sendall(b"Subject: second\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        assert codes(f, 2) == [250, 221]
    first, second = stored(sink)
    assert first.startswith(b"Subject: first\n") and b"X-RcptTo: one@example.test\n" in first
    assert second.startswith(b"Subject: second\n") and b"X-RcptTo: two@example.test\n" in second


BODY = b"".join(b"%04d " % i + b"x" * 70 + b"\r\n" for i in range(1000))  # 75 KB: many TCP segments


def test_new_holds_each_message_whole_in_arrival_order_and_tmp_is_left_empty(sink):
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=30) as c:
        for i in range(30):
            c.sendmail("a@sender.test", [f"n{i}@example.test"], f"Subject: {i}\r\n\r\n".encode() + BODY)
    msgs = stored(sink)
    assert [m.split(b"\n", 1)[0] for m in msgs] == [f"Subject: {i}".encode() for i in range(30)]
    assert all(m.endswith(b"\n\n" + BODY.replace(b"\r\n", b"\n")) for m in msgs)
    assert os.listdir(os.path.join(sink.mdir, "tmp")) == []


def test_a_message_it_cannot_store_is_deferred_and_the_server_goes_on(sink):
    tmp = os.path.join(sink.mdir, "tmp")
    os.rmdir(tmp)
    open(tmp, "w").close()  # no directory to write into: every store fails
    try:
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=30) as c:
            with pytest.raises(smtplib.SMTPDataError) as e:
                c.sendmail("a@sender.test", ["x@example.test"], b"Subject: lost\r\n\r\nbody\r\n")
            assert e.value.smtp_code == 451  # try again later, not a refusal for good
    finally:
        os.remove(tmp)
        os.mkdir(tmp)
    assert stored(sink) == []
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=30) as c:
        assert c.sendmail("a@sender.test", ["x@example.test"], b"Subject: kept\r\n\r\nbody\r\n") == {}
    [raw] = stored(sink)
    assert raw.startswith(b"Subject: kept\n")
