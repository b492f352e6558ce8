/* Text for mail headers and bodies: cleaning, RFC 2047 encoded-words, folding, quoted-printable, HTML
 * escapes. */
#include "mime.h"

#include <stdio.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"
#include "text.h"

char *mail_clean(const char *text) {
    sb_t b = {0};
    const unsigned char *p = (const unsigned char *)(text ? text : "");
    size_t n = strlen((const char *)p);
    while (n > 0) {
        unsigned int cp;
        size_t len = utf8_decode(p, n, &cp);
        if (len == 0) {
            sb_add(&b, "\xef\xbf\xbd"); /* U+FFFD */
            len = 1;
        } else if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0) || cp == 0x2028 || cp == 0x2029) {
            /* A line break or other control character in a name must never start a header line or a
             * line of the body that looks like ours. */
            sb_addc(&b, ' ');
        } else {
            sb_addn(&b, (const char *)p, len);
        }
        p += len;
        n -= len;
    }
    char *s = sb_take(&b);
    size_t start = 0, end = strlen(s);
    while (s[start] == ' ')
        start++;
    while (end > start && s[end - 1] == ' ')
        end--;
    memmove(s, s + start, end - start);
    s[end - start] = '\0';
    return s;
}

static int printable_ascii(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            return 0;
    return 1;
}

/* Appends text as RFC 2047 encoded-words, starting at column col; every word after the first goes on a
 * folded line of its own (CRLF SP), each sized to keep lines within 78 characters. Returns the column
 * after the last word. Each word carries whole UTF-8 characters only. */
static size_t add_encoded_words(sb_t *b, const char *text, size_t col) {
    const unsigned char *p = (const unsigned char *)text;
    size_t n = strlen(text);
    int first = 1;
    while (n > 0 || first) {
        if (!first) {
            sb_add(b, "\r\n ");
            col = 1;
        }
        /* "=?UTF-8?B?" + base64 + "?=": 12 characters around 4 per 3 bytes; a word is at most 75
         * characters (RFC 2047) and its line at most 78 (RFC 5322). */
        size_t limit = col < 78 ? 78 - col : 0;
        if (limit > 75)
            limit = 75;
        size_t room = limit >= 12 + 8 ? limit - 12 : 8;
        size_t max_bytes = room / 4 * 3;
        size_t take = 0;
        size_t after_space = 0; /* a cut right after a space, so that readers that put a space between
                                 * words (against RFC 2047) still cut between words */
        while (take < n) {
            unsigned int cp;
            size_t len = utf8_decode(p + take, n - take, &cp); /* the text is clean: whole characters */
            if (len == 0)
                len = 1;
            if (take + len > max_bytes && take > 0)
                break;
            take += len;
            if (p[take - 1] == ' ')
                after_space = take;
        }
        if (take < n && after_space > take / 2)
            take = after_space;
        char b64[sodium_base64_ENCODED_LEN(80, sodium_base64_VARIANT_ORIGINAL)];
        sodium_bin2base64(b64, sizeof(b64), p, take, sodium_base64_VARIANT_ORIGINAL);
        sb_printf(b, "=?UTF-8?B?%s?=", b64);
        col += 12 + strlen(b64);
        p += take;
        n -= take;
        first = 0;
    }
    return col;
}

/* Longest word (run of non-spaces) of s. */
static size_t longest_word(const char *s) {
    size_t best = 0;
    while (*s) {
        size_t n = strcspn(s, " ");
        if (n > best)
            best = n;
        s += n;
        s += strspn(s, " ");
    }
    return best;
}

/* Appends clean printable-ASCII text with single spaces, folded (CRLF before a space) so that no line
 * grows past 78 characters, the first line starting at column col. Words must be at most 77 - col. */
static void add_folded(sb_t *b, const char *text, size_t col) {
    const char *p = text;
    int first = 1;
    while (*p) {
        size_t n = strcspn(p, " ");
        if (!first && col + 1 + n > 78) {
            sb_add(b, "\r\n");
            col = 0;
        }
        if (!first) {
            sb_addc(b, ' ');
            col++;
        }
        sb_addn(b, p, n);
        col += n;
        p += n;
        p += strspn(p, " ");
        first = 0;
    }
}

/* text with every run of spaces made one space: a header never holds a line of spaces only, and
 * folding has a place between any two words. */
static char *single_spaced(const char *text) {
    sb_t b = {0};
    for (const char *p = text; *p; p++)
        if (*p != ' ' || (b.n > 0 && b.s[b.n - 1] != ' '))
            sb_addc(&b, *p);
    while (b.n > 0 && b.s[b.n - 1] == ' ')
        b.s[--b.n] = '\0';
    return sb_take(&b);
}

/* Plain ASCII that can stay as it is (folded at spaces): printable, no "=?" (mail readers take that for
 * the start of an encoded-word), and no word too long to fold onto a line of its own. */
static int plain_header_ok(const char *text, size_t col) {
    return printable_ascii(text) && !strstr(text, "=?") && longest_word(text) + col <= 77;
}

char *mail_header_text(const char *clean) {
    sb_t b = {0};
    char *one = single_spaced(clean);
    if (plain_header_ok(one, 9 /* "Subject: " */))
        add_folded(&b, one, 9);
    else
        add_encoded_words(&b, one, 9);
    free(one);
    return sb_take(&b);
}

char *mail_mailbox(const char *clean_name, const char *addr) {
    sb_t b = {0};
    char *one = single_spaced(clean_name ? clean_name : "");
    size_t col;
    if (!*one) {
        sb_add(&b, addr);
        free(one);
        return sb_take(&b);
    }
    /* Plain ASCII: a quoted-string, folded at its spaces when long (RFC 5322 allows FWS inside one). Words
     * are checked with room for a quote and escapes on either side. */
    if (plain_header_ok(one, 6 + 4)) {
        sb_t q = {0};
        sb_addc(&q, '"');
        for (const char *p = one; *p; p++) {
            if (*p == '"' || *p == '\\')
                sb_addc(&q, '\\');
            sb_addc(&q, *p);
        }
        sb_addc(&q, '"');
        char *quoted = sb_take(&q);
        add_folded(&b, quoted, 6 /* "From: " */);
        free(quoted);
        const char *last = strrchr(b.s, '\n');
        col = last ? strlen(last + 1) : 6 + b.n;
    } else {
        col = add_encoded_words(&b, one, 6 /* "From: " */);
    }
    free(one);
    /* The address on a folded line of its own when it would not fit (an address is at most 254
     * characters: that line stays far below 998). */
    if (col + 3 + strlen(addr) > 78)
        sb_add(&b, "\r\n");
    sb_printf(&b, " <%s>", addr);
    return sb_take(&b);
}

/* One quoted-printable token in tok: the character as is, or "=XX"; returns its length. */
static size_t qp_plain(char *tok, unsigned char ch) {
    tok[0] = (char)ch;
    return 1;
}

static size_t qp_escape(char *tok, unsigned char ch) {
    static const char hex[] = "0123456789ABCDEF";
    tok[0] = '=';
    tok[1] = hex[ch >> 4];
    tok[2] = hex[ch & 15];
    return 3;
}

char *mail_qp_encode(const char *text) {
    sb_t b = {0};
    const char *line = text;
    while (*line) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (len > 0 && line[len - 1] == '\r')
            len--;
        size_t col = 0;
        for (size_t i = 0; i < len; i++) {
            unsigned char ch = (unsigned char)line[i];
            char tok[4];
            int last = i + 1 == len;
            /* Encoded: non-ASCII, '=', controls, space or tab at the end of a line (transports strip
             * it), and a leading '.' or "From " which some transports alter. */
            int plain = ch >= 33 && ch <= 126 && ch != '=';
            if ((ch == ' ' || ch == '\t') && !last)
                plain = 1;
            if (col == 0 && (ch == '.' || (ch == 'F' && strncmp(line + i, "From ", 5) == 0)))
                plain = 0;
            /* Made by hand, not by snprintf: once per character of every message, the printf
             * machinery was the largest part of the mailer's CPU time. */
            size_t tlen = plain ? qp_plain(tok, ch) : qp_escape(tok, ch);
            /* A soft break keeps lines at 76 including the '='. */
            if (col + tlen > 75) {
                sb_addn(&b, "=\r\n", 3);
                col = 0;
                /* The next line starts here: what a leading '.' or "From " would suffer applies. */
                if (ch == '.' || (ch == 'F' && strncmp(line + i, "From ", 5) == 0))
                    tlen = qp_escape(tok, ch);
            }
            sb_addn(&b, tok, tlen);
            col += tlen;
        }
        sb_add(&b, "\r\n");
        if (!eol)
            break;
        line = eol + 1;
    }
    return sb_take(&b);
}

char *mail_html_escape(const char *text) {
    sb_t b = {0};
    for (const char *p = text; *p; p++) {
        switch (*p) {
            case '&': sb_add(&b, "&amp;"); break;
            case '<': sb_add(&b, "&lt;"); break;
            case '>': sb_add(&b, "&gt;"); break;
            case '"': sb_add(&b, "&quot;"); break;
            case '\'': sb_add(&b, "&#39;"); break;
            default: sb_addc(&b, *p);
        }
    }
    return sb_take(&b);
}
