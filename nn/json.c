/* json.c - the JSON of safetensors headers: a strict lexer that reads
 * untrusted text within its bounds, and the writer's growing buffer. */
#include "json.h"

#include <stdlib.h>
#include <string.h>

#include "nn.h"

#define MAX_DEPTH 4

/* ---------------------------------------------------------------- reading */

static void ws(nn_json *L)
{
    while (L->s < L->end && (*L->s == ' ' || *L->s == '\t' || *L->s == '\n' || *L->s == '\r'))
        L->s++;
}

bool nn_json_expect(nn_json *L, char c)
{
    ws(L);
    if (L->s >= L->end || *L->s != c)
        return nn_seterr(L->err, L->errlen, "bad header JSON: expected '%c' at byte %ld", c,
                         (long)(L->s - L->begin));
    L->s++;
    return true;
}

bool nn_json_peek(nn_json *L, char c)
{
    ws(L);
    return L->s < L->end && *L->s == c;
}

bool nn_json_at_end(nn_json *L)
{
    ws(L);
    return L->s == L->end;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *nn_json_string(nn_json *L)
{
    if (!nn_json_expect(L, '"'))
        return NULL;
    const char *start = L->s;
    while (L->s < L->end && *L->s != '"') {
        if (*L->s == '\\')
            L->s++;
        L->s++;
    }
    if (L->s >= L->end) {
        nn_seterr(L->err, L->errlen, "bad header JSON: unterminated string");
        return NULL;
    }
    size_t raw = (size_t)(L->s - start);
    char *out = malloc(raw + 1), *o = out;
    if (!out) {
        nn_seterr(L->err, L->errlen, "out of memory");
        return NULL;
    }
    for (const char *p = start; p < L->s; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch < 0x20)
            goto bad;
        if (ch != '\\') {
            *o++ = (char)ch;
            continue;
        }
        p++;
        switch (*p) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            /* \uXXXX: at most 6 input bytes become at most 3 output bytes, or a
             * surrogate pair's 12 become 4, so the output never outgrows raw */
            if (L->s - p < 5)
                goto bad;
            uint32_t cp = 0;
            for (int k = 1; k <= 4; k++) {
                int h = hexval(p[k]);
                if (h < 0)
                    goto bad;
                cp = cp * 16 + (uint32_t)h;
            }
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00) {
                uint32_t lo = 0;
                if (L->s - p < 7 || p[1] != '\\' || p[2] != 'u')
                    goto bad;
                for (int k = 3; k <= 6; k++) {
                    int h = hexval(p[k]);
                    if (h < 0)
                        goto bad;
                    lo = lo * 16 + (uint32_t)h;
                }
                if (lo < 0xDC00 || lo > 0xDFFF)
                    goto bad;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF)
                goto bad;
            if (cp == 0)
                goto bad;
            o += nn_utf8_encode(cp, o);
            break;
        }
        default:
            goto bad;
        }
    }
    *o = '\0';
    L->s++; /* closing quote */
    return out;
bad:
    free(out);
    nn_seterr(L->err, L->errlen, "bad header JSON: invalid string escape or control character");
    return NULL;
}

static bool uint_value(nn_json *L, uint64_t *v)
{
    ws(L);
    if (L->s >= L->end || *L->s < '0' || *L->s > '9')
        return nn_seterr(L->err, L->errlen, "bad header JSON: expected a non-negative integer");
    uint64_t x = 0;
    while (L->s < L->end && *L->s >= '0' && *L->s <= '9') {
        if (x > (UINT64_MAX - 9) / 10)
            return nn_seterr(L->err, L->errlen, "bad header JSON: integer too large");
        x = x * 10 + (uint64_t)(*L->s++ - '0');
    }
    if (L->s < L->end && (*L->s == '.' || *L->s == 'e' || *L->s == 'E'))
        return nn_seterr(L->err, L->errlen, "bad header JSON: expected an integer");
    *v = x;
    return true;
}

bool nn_json_uint_array(nn_json *L, uint64_t *out, int max, int *n)
{
    if (!nn_json_expect(L, '['))
        return false;
    *n = 0;
    if (nn_json_peek(L, ']'))
        return nn_json_expect(L, ']');
    do {
        if (*n == max)
            return nn_seterr(L->err, L->errlen, "bad header: array longer than %d", max);
        if (!uint_value(L, &out[(*n)++]))
            return false;
    } while (nn_json_peek(L, ',') && nn_json_expect(L, ','));
    return nn_json_expect(L, ']');
}

bool nn_json_skip(nn_json *L, int depth)
{
    if (depth > MAX_DEPTH)
        return nn_seterr(L->err, L->errlen, "bad header JSON: nested too deeply");
    ws(L);
    if (L->s >= L->end)
        return nn_seterr(L->err, L->errlen, "bad header JSON: unexpected end");
    char c = *L->s;
    if (c == '"') {
        char *s = nn_json_string(L);
        free(s);
        return s != NULL;
    }
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        L->s++;
        if (nn_json_peek(L, close))
            return nn_json_expect(L, close);
        do {
            if (c == '{') {
                char *k = nn_json_string(L);
                if (!k)
                    return false;
                free(k);
                if (!nn_json_expect(L, ':'))
                    return false;
            }
            if (!nn_json_skip(L, depth + 1))
                return false;
        } while (nn_json_peek(L, ',') && nn_json_expect(L, ','));
        return nn_json_expect(L, close);
    }
    /* numbers, true, false, null */
    const char *start = L->s;
    while (L->s < L->end && (strchr("+-.eE", *L->s) || (*L->s >= '0' && *L->s <= '9') ||
                             (*L->s >= 'a' && *L->s <= 'z')))
        L->s++;
    if (L->s == start)
        return nn_seterr(L->err, L->errlen, "bad header JSON: unexpected character");
    return true;
}

/* ---------------------------------------------------------------- writing */

void nn_json_put(nn_json_out *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n + 1)
            cap *= 2;
        b->s = nn_check_alloc(realloc(b->s, cap));
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

void nn_json_putf(nn_json_out *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    nn_json_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

void nn_json_put_string(nn_json_out *b, const char *s)
{
    nn_json_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            nn_json_put(b, e, 2);
        } else if (*p < 0x20)
            nn_json_putf(b, "\\u%04x", *p);
        else
            nn_json_put(b, (const char *)p, 1);
    }
    nn_json_put(b, "\"", 1);
}
