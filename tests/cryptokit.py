"""The tests' libsodium helpers, in one place: opening and sealing a mail job's sealed_code, and an Argon2id
password hash as the producer side makes it. Standard library and libsodium through ctypes only, so that
tests/chaos/chaos.py (a script, run without pytest) can use it as the pytest suite does."""
import base64
import ctypes
import ctypes.util
import os

_sodium = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
assert _sodium.sodium_init() >= 0
for _f in ("crypto_pwhash_argon2id_opslimit_interactive", "crypto_pwhash_argon2id_memlimit_interactive"):
    getattr(_sodium, _f).restype = ctypes.c_size_t

# The sealed forms: the command worker's (an ephemeral public key, a nonce, the code in crypto_box from that
# key to the mailer's) and crypto_box_seal's (jobs written before), for a 12-character code.
CODE_LEN = 12
BOX_LEN = 32 + 24 + 16 + CODE_LEN   # 84
ANON_LEN = 32 + 16 + CODE_LEN       # 60


def open_sealed_code(sealed_b64, sk, pk=None):
    """A mail job's sealed_code opened with the mailer's secret key sk, in either form (pk, for
    crypto_box_seal's form, is derived from sk when not given). The canonical 12-character code; ValueError
    when it has another length or does not open."""
    raw = base64.b64decode(sealed_b64, validate=True)
    if len(sk) != 32 or (pk is not None and len(pk) != 32):
        raise ValueError("a key is not 32 bytes")
    out = ctypes.create_string_buffer(CODE_LEN)
    if len(raw) == BOX_LEN:
        rc = _sodium.crypto_box_open_easy(out, raw[56:], ctypes.c_ulonglong(len(raw) - 56), raw[32:56],
                                          raw[:32], sk)
    elif len(raw) == ANON_LEN:
        if pk is None:
            derived = ctypes.create_string_buffer(32)
            assert _sodium.crypto_scalarmult_base(derived, sk) == 0
            pk = derived.raw
        rc = _sodium.crypto_box_seal_open(out, raw, ctypes.c_ulonglong(len(raw)), pk, sk)
    else:
        raise ValueError(f"a sealed code is {BOX_LEN} or {ANON_LEN} bytes, not {len(raw)}")
    if rc != 0:
        raise ValueError("the sealed code does not open with this key")
    return out.raw.decode()


def shown_code(code):
    """A canonical 12-character code as the e-mail shows it: XXXX-XXXX-XXXX."""
    return f"{code[0:4]}-{code[4:8]}-{code[8:12]}"


def seal_code(code, pk, anon=False):
    """The code sealed to the public key pk, base64: the command worker's form, or with anon
    crypto_box_seal's."""
    msg = code.encode()
    if anon:
        out = ctypes.create_string_buffer(48 + len(msg))
        assert _sodium.crypto_box_seal(out, msg, ctypes.c_ulonglong(len(msg)), pk) == 0
        return base64.b64encode(out.raw).decode()
    epk, esk = ctypes.create_string_buffer(32), ctypes.create_string_buffer(32)
    assert _sodium.crypto_box_keypair(epk, esk) == 0
    nonce = os.urandom(24)
    box = ctypes.create_string_buffer(16 + len(msg))
    assert _sodium.crypto_box_easy(box, msg, ctypes.c_ulonglong(len(msg)), nonce, pk, esk) == 0
    return base64.b64encode(epk.raw + nonce + box.raw).decode()


def argon2id_hash(password):
    """An Argon2id string at libsodium's interactive limits, as the CLI (the producer side) makes it."""
    pw = password.encode()
    out = ctypes.create_string_buffer(128)  # crypto_pwhash_STRBYTES
    assert _sodium.crypto_pwhash_argon2id_str(
        out, pw, ctypes.c_ulonglong(len(pw)),
        ctypes.c_ulonglong(_sodium.crypto_pwhash_argon2id_opslimit_interactive()),
        ctypes.c_size_t(_sodium.crypto_pwhash_argon2id_memlimit_interactive())) == 0
    return out.value.decode()
