/* Text for mail headers and bodies (RFC 5322, RFC 2047, RFC 2045), safe against header injection. Each
 * function returns a new string the caller frees (free()). */
#ifndef RAIKOO_MIME_H
#define RAIKOO_MIME_H

/* text with every control character (C0, DEL, C1, U+2028/2029) replaced by a space, invalid UTF-8 by
 * U+FFFD, and surrounding space trimmed: what every value goes through before it reaches a mail. */
char *mail_clean(const char *text);

/* A header value for unstructured text (Subject): as is when printable ASCII, else RFC 2047
 * encoded-words (UTF-8, base64), folded with CRLF SP so that no line grows past 78 characters. The
 * input must be clean (mail_clean). */
char *mail_header_text(const char *clean);

/* A mailbox for To/From: "addr", "\"Display Name\" <addr>" or "=?UTF-8?B?...?= <addr>". */
char *mail_mailbox(const char *clean_name, const char *addr);

/* quoted-printable of text with LF or CRLF line ends, output lines CRLF-terminated and at most 76
 * characters. */
char *mail_qp_encode(const char *text);

/* text with & < > " ' replaced by entities. */
char *mail_html_escape(const char *text);

#endif
