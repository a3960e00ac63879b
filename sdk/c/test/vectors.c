/* vectors.c: checks weir.c against the canonical batches in sdk/vectors (README.md there),
 * which the host writes. Runs natively: weir.c is compiled against the stand-in
 * bindings in this directory (operator_component.h), and batches go through the
 * exported `process` entry point exactly as the component glue would pass them.
 *
 * weir.c serves one operator per component, plain, keyed or keyed with timers, so this
 * file is built four times: -DWEIR_TEST_KEYED=0 checks the plain input and output
 * vectors, -DWEIR_TEST_KEYED=1 the keyed ones, -DWEIR_TEST_KEYED=2 -DWEIR_TIMERS the
 * on-timer input and the keyed outputs with timer changes, -DWEIR_TEST_KEYED=3 -DWEIR_TIMERS a
 * two-input operator (.process_co) on the keyed vectors with the input tag behind them
 * and the keyed outputs with timers (.ci/sdk-tests has the commands; it adds ASan and UBSan when the
 * compiler has them, which turns any read past a batch into a failure).
 *
 *   ./vectors-plain sdk/vectors && ./vectors-keyed sdk/vectors
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef WEIR_TEST_KEYED
#error "build with -DWEIR_TEST_KEYED=0 (plain operator), 1 (keyed operator), 2 -DWEIR_TIMERS (keyed with timers) or 3 -DWEIR_TIMERS (two inputs)"
#endif
#if WEIR_TEST_KEYED >= 2
#ifndef WEIR_TIMERS
#error "-DWEIR_TEST_KEYED=2 and 3 need -DWEIR_TIMERS"
#endif
#include "timed_operator_component.h"
#else
#include "operator_component.h"
#endif
#include "weir.h"

/* ---- bytes ---- */

typedef struct buf {
    uint8_t *p; /* never NULL once initialized: empty fields are valid pointers too */
    size_t n, cap;
} buf;

static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}
static void put(buf *b, const void *p, size_t n) {
    if (!b->p || b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 16;
        b->p = xrealloc(b->p, b->cap);
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
}
/* Little-endian by shifts, so the expected bytes do not depend on the test machine. */
static void put_u32(buf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, x, 4);
}
static void put_i64(buf *b, int64_t v) {
    put_u32(b, (uint32_t)((uint64_t)v & 0xffffffffu));
    put_u32(b, (uint32_t)((uint64_t)v >> 32));
}
static void put_field(buf *b, const buf *x) {
    put_u32(b, (uint32_t)x->n);
    put(b, x->p, x->n);
}
static void put_record(buf *b, int64_t ts, const buf *key, const buf *value) {
    put_i64(b, ts);
    put_field(b, key);
    put_field(b, value);
}
static int same(const buf *a, const uint8_t *p, size_t n) { return a->n == n && (n == 0 || memcmp(a->p, p, n) == 0); }

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
/* Appends the hex digits of s (whitespace skipped, `#` to the end of a line ignored). */
static int put_hex(buf *b, const char *s) {
    int hi = -1;
    put(b, "", 0);
    for (; *s; s++) {
        if (*s == '#') {
            while (*s && *s != '\n') s++;
            if (!*s) break;
            continue;
        }
        if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') continue;
        int d = hexval(*s);
        if (d < 0) return -1;
        if (hi < 0) {
            hi = d;
        } else {
            uint8_t x = (uint8_t)(hi << 4 | d);
            put(b, &x, 1);
            hi = -1;
        }
    }
    return hi < 0 ? 0 : -1;
}

/* ---- vectors ---- */

enum { MAX_ITEMS = 32 };
enum { UNCHANGED, SET, CLEARED };

typedef struct record { int64_t ts; buf key, value; } record;
typedef struct key_entry { buf key, state; int has_state; } key_entry;
typedef struct keyed_record { uint32_t index; int64_t ts; buf value; } keyed_record;
typedef struct update { int kind; buf state; } update;
typedef struct fired_timer { uint32_t index; int64_t ts; int domain; } fired_timer;
typedef struct change { int kind; uint32_t index; int64_t ts; } change; /* kind: the layout's byte */

typedef struct vector {
    char name[128], layout[32];
    record recs[MAX_ITEMS]; /* `record` lines: plain input and outputs */
    size_t nrecs;
    key_entry keys[MAX_ITEMS]; /* keyed input */
    size_t nkeys;
    keyed_record krecs[MAX_ITEMS];
    size_t nkrecs;
    update ups[MAX_ITEMS]; /* keyed output */
    size_t nups;
    fired_timer fired[MAX_ITEMS]; /* on-timer input */
    size_t nfired;
    change changes[MAX_ITEMS]; /* keyed output with timers */
    size_t nchanges;
    int64_t input; /* two-input batch: the input its records came through; -1: none */
    buf bytes; /* NAME.hex */
} vector;

static int failures;
static void fail(const vector *v, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL %s: ", v->name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    failures++;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) put(&b, chunk, n);
    fclose(f);
    put(&b, "", 1);
    return (char *)b.p;
}

static int field(buf *b, const char *w) {
    memset(b, 0, sizeof *b);
    return strcmp(w, "-") == 0 ? (put(b, "", 0), 0) : put_hex(b, w);
}
static int int64_word(const char *w, int64_t *v) {
    char *end;
    errno = 0;
    long long x = strtoll(w, &end, 10);
    if (errno || *end || end == w) return -1;
    *v = (int64_t)x;
    return 0;
}

static int domain_word(const char *w) { return strcmp(w, "event") == 0 ? 0 : strcmp(w, "processing") == 0 ? 1 : -1; }

/* Parses NAME.txt (the records) and NAME.hex (the bytes) of dir; 0 on success. */
static int load(const char *dir, const char *name, vector *v) {
    char path[1024];
    memset(v, 0, sizeof *v);
    snprintf(v->name, sizeof v->name, "%s", name);
    v->input = -1;
    snprintf(path, sizeof path, "%s/%s.txt", dir, name);
    char *text = slurp(path);
    if (!text) return fail(v, "cannot read %s", path), -1;
    int bad = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line && !bad; line = strtok_r(NULL, "\n", &save)) {
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *w[6] = {0}, *s2 = NULL;
        size_t n = 0;
        for (char *t = strtok_r(line, " \t\r", &s2); t && n < 6; t = strtok_r(NULL, " \t\r", &s2)) w[n++] = t;
        if (n == 0) continue;
        if (n == 2 && strcmp(w[0], "layout") == 0) {
            snprintf(v->layout, sizeof v->layout, "%s", w[1]);
        } else if (n == 4 && strcmp(w[0], "record") == 0 && v->nrecs < MAX_ITEMS) {
            bad = int64_word(w[1], &v->recs[v->nrecs].ts) || field(&v->recs[v->nrecs].key, w[2]) || field(&v->recs[v->nrecs].value, w[3]);
            v->nrecs++;
        } else if (n == 3 && strcmp(w[0], "key") == 0 && v->nkeys < MAX_ITEMS) {
            v->keys[v->nkeys].has_state = strcmp(w[2], "none") != 0;
            bad = field(&v->keys[v->nkeys].key, w[1]) || field(&v->keys[v->nkeys].state, v->keys[v->nkeys].has_state ? w[2] : "-");
            v->nkeys++;
        } else if (n == 4 && strcmp(w[0], "keyed-record") == 0 && v->nkrecs < MAX_ITEMS) {
            int64_t index = -1;
            bad = int64_word(w[1], &index) || index < 0 || index > UINT32_MAX || int64_word(w[2], &v->krecs[v->nkrecs].ts) ||
                  field(&v->krecs[v->nkrecs].value, w[3]);
            v->krecs[v->nkrecs++].index = (uint32_t)index;
        } else if (n >= 2 && strcmp(w[0], "state") == 0 && v->nups < MAX_ITEMS) {
            int set = n == 3 && strcmp(w[1], "set") == 0;
            v->ups[v->nups].kind = set ? SET : n == 2 && strcmp(w[1], "cleared") == 0 ? CLEARED : UNCHANGED;
            bad = (n == 2 && strcmp(w[1], "unchanged") != 0 && strcmp(w[1], "cleared") != 0) || (n == 3 && !set) ||
                  field(&v->ups[v->nups].state, set ? w[2] : "-");
            v->nups++;
        } else if (n == 4 && strcmp(w[0], "fired-timer") == 0 && v->nfired < MAX_ITEMS) {
            int64_t index = -1;
            fired_timer *f = &v->fired[v->nfired++];
            f->domain = domain_word(w[3]);
            bad = int64_word(w[1], &index) || index < 0 || index > UINT32_MAX || int64_word(w[2], &f->ts) || f->domain < 0;
            f->index = (uint32_t)index;
        } else if (n == 2 && strcmp(w[0], "input") == 0) {
            bad = int64_word(w[1], &v->input) || v->input < 0 || v->input > 1;
        } else if (n == 5 && strcmp(w[0], "timer-change") == 0 && v->nchanges < MAX_ITEMS) {
            int64_t index = -1;
            change *c = &v->changes[v->nchanges++];
            int d = domain_word(w[2]), del = strcmp(w[1], "delete") == 0;
            bad = (!del && strcmp(w[1], "set") != 0) || d < 0 || int64_word(w[3], &index) || index < 0 || index > UINT32_MAX ||
                  int64_word(w[4], &c->ts);
            c->kind = 2 * d + del;
            c->index = (uint32_t)index;
        } else {
            bad = 1;
        }
    }
    free(text);
    for (size_t i = 0; i < v->nkrecs; i++) bad |= v->krecs[i].index >= v->nkeys;
    for (size_t i = 0; i < v->nfired; i++) bad |= v->fired[i].index >= v->nkeys;
    if (bad || !v->layout[0]) return fail(v, "cannot read its .txt (bad line or key index, or more than %d items)", MAX_ITEMS), -1;
    snprintf(path, sizeof path, "%s/%s.hex", dir, name);
    text = slurp(path);
    if (!text) return fail(v, "cannot read %s", path), -1;
    bad = put_hex(&v->bytes, text);
    free(text);
    if (bad) return fail(v, "cannot read its .hex"), -1;
    return 0;
}

static void release(vector *v) {
    for (size_t i = 0; i < v->nrecs; i++) free(v->recs[i].key.p), free(v->recs[i].value.p);
    for (size_t i = 0; i < v->nkeys; i++) free(v->keys[i].key.p), free(v->keys[i].state.p);
    for (size_t i = 0; i < v->nkrecs; i++) free(v->krecs[i].value.p);
    for (size_t i = 0; i < v->nups; i++) free(v->ups[i].state.p);
    free(v->bytes.p);
}

/* ---- the stand-in host side of the bindings ---- */

void weir_dataflow_log_log(weir_dataflow_log_level_t level, OC(string_t) *m) {
    fprintf(stderr, "weir log %d: %.*s\n", level, (int)m->len, (const char *)m->ptr);
}
void OC(list_u8_free)(OC(list_u8_t) *l) {
    free(l->ptr);
    l->ptr = NULL;
    l->len = 0;
}
void OC(list_tuple2_string_string_free)(OC(list_tuple2_string_string_t) *l) {
    for (size_t i = 0; i < l->len; i++) free(l->ptr[i].f0.ptr), free(l->ptr[i].f1.ptr);
    free(l->ptr);
    l->ptr = NULL;
    l->len = 0;
}

/* The clock: fixed values the timed operator checks it is handed. */
enum { TEST_WATERMARK = 41, TEST_PROCESSING_TIME = 1700000000000 };
static int clock_reads;
int64_t weir_dataflow_clock_current_watermark(void) { return clock_reads++, TEST_WATERMARK; }
int64_t weir_dataflow_clock_current_processing_time(void) { return clock_reads++, (int64_t)TEST_PROCESSING_TIME; }

/* State versions: what the operator declares, and what the stand-in host restored. */
enum { TEST_STATE_VERSION = 7, TEST_RESTORED_STATE_VERSION = 6 };
static long declared = -1;
void weir_dataflow_state_version_declare(uint32_t version) { declared = version; }
bool weir_dataflow_state_version_restored(uint32_t *ret) { return *ret = TEST_RESTORED_STATE_VERSION, true; }
static int restored_seen = -1;
static int on_open(const weir_context *ctx) {
    restored_seen = ctx->restored_state_version ? (int)*ctx->restored_state_version : -2;
    return 0;
}

/* Calls `process` (or, timers, `on-timer`) with a copy of exactly n bytes (so a sanitizer sees any read past the
 * batch). Returns 0 with the output in *out, or the error's tag. */
static int call(const uint8_t *p, size_t n, buf *out, int fired) {
    OC(list_u8_t) batch = {xrealloc(NULL, n), n}, ret = {0};
    if (n) memcpy(batch.ptr, p, n);
    exports_weir_dataflow_operator_operator_error_t err;
#ifdef WEIR_TIMERS
    bool ok = fired ? exports_weir_dataflow_timers_on_timer(0, &batch, &ret, &err) : exports_weir_dataflow_operator_process(0, &batch, &ret, &err);
#else
    (void)fired;
    bool ok = exports_weir_dataflow_operator_process(0, &batch, &ret, &err);
#endif
    if (ok) {
        *out = (buf){ret.ptr, ret.len, ret.len};
        return 0;
    }
    if (err.tag != EXPORTS_WEIR_DATAFLOW_OPERATOR_OPERATOR_ERROR_UNKNOWN_OPERATOR) free(err.val.failed.ptr);
    return 1 + err.tag;
}
static int process(const uint8_t *p, size_t n, buf *out) { return call(p, n, out, 0); }
#define BAD_INPUT (1 + EXPORTS_WEIR_DATAFLOW_OPERATOR_OPERATOR_ERROR_BAD_INPUT)

static void expect_output(const vector *v, const char *what, const buf *got, const uint8_t *want, size_t n) {
    if (same(got, want, n)) return;
    size_t at = 0;
    while (at < got->n && at < n && got->p[at] == want[at]) at++;
    fail(v, "%s: output of %zu bytes, want %zu; first difference at byte %zu", what, got->n, n, at);
}

/* ---- the operator under test and what it checks ---- */

/* ECHO: check each record the SDK hands over against the vector and emit it unchanged.
 * SCRIPT: emit the vector's records on the first input record (ts 0) and, keyed, give
 * key i the vector's update i on the record with ts i. */
static enum { ECHO, SCRIPT } mode;
static const vector *cur;
static size_t seen;  /* records handed over in this batch */
static int checking; /* off while feeding truncated batches */

static void emit_script(weir_out *out) {
    for (size_t i = 0; i < cur->nrecs; i++)
        weir_emit(out, cur->recs[i].ts, cur->recs[i].key.p, (uint32_t)cur->recs[i].key.n, cur->recs[i].value.p,
                  (uint32_t)cur->recs[i].value.n);
}

#if WEIR_TEST_KEYED >= 2
/* SCRIPT: records with an empty value (ts i) give key i update i, the first also emits
 * the vector's records; records with value "t" (ts j) make change j. ECHO: check each
 * fired timer against the vector and emit (key, empty value, the timer's time). */
static int script_timed(const weir_record *r, weir_state *state, weir_timers *timers, weir_out *out) {
    if (weir_current_watermark() != TEST_WATERMARK || weir_current_processing_time() != (int64_t)TEST_PROCESSING_TIME)
        return weir_fail("the clock is not the host's");
    if (r->value_len == 1) {
        if (r->ts < 0 || (size_t)r->ts >= cur->nchanges) return weir_fail("script: no change for this record");
        const change *c = &cur->changes[r->ts];
        void (*const make[4])(weir_timers *, int64_t) = {weir_register_event_time_timer, weir_delete_event_time_timer,
                                                         weir_register_processing_time_timer, weir_delete_processing_time_timer};
        make[c->kind](timers, c->ts);
        return 0;
    }
    if (r->ts == 0) emit_script(out);
    if (r->ts < 0 || (size_t)r->ts >= cur->nups) return weir_fail("script: no update for this record");
    if (cur->ups[r->ts].kind == SET) weir_state_set(state, cur->ups[r->ts].state.p, (uint32_t)cur->ups[r->ts].state.n);
    if (cur->ups[r->ts].kind == CLEARED) weir_state_clear(state);
    return 0;
}
static int on_fired(const weir_timer *t, weir_state *state, weir_timers *timers, weir_out *out) {
    if (checking) {
        uint32_t slen;
        const uint8_t *s = weir_state_get(state, &slen);
        if (seen >= cur->nfired) {
            fail(cur, "more timers than the vector has");
        } else {
            const fired_timer *f = &cur->fired[seen];
            const key_entry *key = &cur->keys[f->index];
            if (t->ts != f->ts || (int)t->domain != f->domain || !same(&key->key, t->key, t->key_len))
                fail(cur, "timer %zu differs from the vector", seen);
            if ((s != NULL) != key->has_state || (s && !same(&key->state, s, slen)))
                fail(cur, "state of timer %zu differs from the vector", seen);
        }
    }
    seen++;
    weir_emit(out, t->ts, t->key, t->key_len, "", 0);
    return 0;
}
#if WEIR_TEST_KEYED == 3
/* Two inputs: SCRIPT as above (the batch comes from input 1); ECHO checks each record,
 * its state and its input against the keyed vector and emits it unchanged. */
static uint32_t want_input;
static int on_co(uint32_t input, const weir_record *r, weir_state *state, weir_timers *timers, weir_out *out) {
    if (checking && input != want_input) fail(cur, "a record of input %u, want %u", input, want_input);
    if (mode == SCRIPT) return script_timed(r, state, timers, out);
    if (checking) {
        uint32_t slen;
        const uint8_t *s = weir_state_get(state, &slen);
        if (seen >= cur->nkrecs) {
            fail(cur, "more records than the vector has");
        } else {
            const keyed_record *k = &cur->krecs[seen];
            const key_entry *key = &cur->keys[k->index];
            if (r->ts != k->ts || !same(&key->key, r->key, r->key_len) || !same(&k->value, r->value, r->value_len))
                fail(cur, "record %zu differs from the vector", seen);
            if ((s != NULL) != key->has_state || (s && !same(&key->state, s, slen)))
                fail(cur, "state of record %zu differs from the vector", seen);
        }
    }
    seen++;
    weir_emit(out, r->ts, r->key, r->key_len, r->value, r->value_len);
    return 0;
}
WEIR_OPERATOR(.process_co = on_co, .on_timer = on_fired, .open = on_open, .state_version = TEST_STATE_VERSION);
#else
static int on_record(const weir_record *r, weir_state *state, weir_timers *timers, weir_out *out) {
    return script_timed(r, state, timers, out);
}
WEIR_OPERATOR(.process_timed = on_record, .on_timer = on_fired, .open = on_open, .state_version = TEST_STATE_VERSION);
#endif
#elif WEIR_TEST_KEYED
static int on_record(const weir_record *r, weir_state *state, weir_out *out) {
    if (mode == SCRIPT) {
        if (r->ts == 0) emit_script(out);
        if (r->ts < 0 || (size_t)r->ts >= cur->nups) return weir_fail("script: no update for this record");
        if (cur->ups[r->ts].kind == SET) weir_state_set(state, cur->ups[r->ts].state.p, (uint32_t)cur->ups[r->ts].state.n);
        if (cur->ups[r->ts].kind == CLEARED) weir_state_clear(state);
        return 0;
    }
    if (checking) {
        uint32_t slen;
        const uint8_t *s = weir_state_get(state, &slen);
        if (seen >= cur->nkrecs) {
            fail(cur, "more records than the vector has");
        } else {
            const keyed_record *k = &cur->krecs[seen];
            const key_entry *key = &cur->keys[k->index];
            if (r->ts != k->ts || !same(&key->key, r->key, r->key_len) || !same(&k->value, r->value, r->value_len))
                fail(cur, "record %zu differs from the vector", seen);
            if ((s != NULL) != key->has_state || (s && !same(&key->state, s, slen)))
                fail(cur, "state of record %zu differs from the vector", seen);
        }
    }
    seen++;
    weir_emit(out, r->ts, r->key, r->key_len, r->value, r->value_len);
    return 0;
}
WEIR_OPERATOR(.process_keyed = on_record, .open = on_open, .state_version = TEST_STATE_VERSION);
#else
static int on_record(const weir_record *r, weir_out *out) {
    if (mode == SCRIPT) {
        emit_script(out);
        return 0;
    }
    if (checking) {
        if (seen >= cur->nrecs)
            fail(cur, "more records than the vector has");
        else if (r->ts != cur->recs[seen].ts || !same(&cur->recs[seen].key, r->key, r->key_len) ||
                 !same(&cur->recs[seen].value, r->value, r->value_len))
            fail(cur, "record %zu differs from the vector", seen);
    }
    seen++;
    weir_emit(out, r->ts, r->key, r->key_len, r->value, r->value_len);
    return 0;
}
WEIR_OPERATOR(.process = on_record, .open = on_open, .state_version = TEST_STATE_VERSION);
#endif

/* Decoding an input vector: the records (and states) handed over, the echoed output, and
 * bad input for every prefix that ends inside a record (plain) or at all (keyed). */
static void check_batch(const vector *v, const uint8_t *bytes, size_t nbytes) {
    cur = v;
    mode = ECHO;
    checking = 1;
    seen = 0;
    buf out = {0}, want = {0};
    put_u32(&want, 0);
    const int fired = WEIR_TEST_KEYED == 2;
    int rc = call(bytes, nbytes, &out, fired);
    if (rc) {
        fail(v, "process failed with error tag %d", rc - 1);
    } else {
#if WEIR_TEST_KEYED == 2
        size_t n = v->nfired;
        buf empty = {0};
        put(&empty, "", 0);
        for (size_t i = 0; i < n; i++) put_record(&want, v->fired[i].ts, &v->keys[v->fired[i].index].key, &empty);
        free(empty.p);
#elif WEIR_TEST_KEYED
        size_t n = v->nkrecs;
        for (size_t i = 0; i < n; i++) put_record(&want, v->krecs[i].ts, &v->keys[v->krecs[i].index].key, &v->krecs[i].value);
#else
        size_t n = v->nrecs;
        put(&want, v->bytes.p, v->bytes.n);
#endif
        uint32_t len = (uint32_t)(want.n - 4);
        for (int i = 0; i < 4; i++) want.p[i] = (uint8_t)(len >> (8 * i));
#if WEIR_TEST_KEYED
        for (size_t i = 0; i < v->nkeys; i++) put(&want, "", 1); /* unchanged */
#endif
        if (seen != n) fail(v, "%zu records handed over, the vector has %zu", seen, n);
        expect_output(v, "echo", &out, want.p, want.n);
        free(out.p);
    }
    free(want.p);

    checking = 0;
    size_t boundary = 0, next = 0;
    for (size_t cut = 0; cut < nbytes; cut++) {
#if !WEIR_TEST_KEYED
        /* Plain batches may end after any whole record. */
        if (cut == boundary) {
            if (next < v->nrecs) boundary += 16 + v->recs[next].key.n + v->recs[next].value.n, next++;
            continue;
        }
#endif
        rc = call(bytes, cut, &out, fired);
        if (rc == 0) free(out.p);
        if (rc != BAD_INPUT) fail(v, "the first %zu bytes: want bad-input, got %s", cut, rc ? "another error" : "success");
    }
    (void)boundary, (void)next;
}

static void check_input(const vector *v) {
#if WEIR_TEST_KEYED == 3
    /* A two-input batch is the keyed batch with the input tag (u32) behind it: the host's
     * vector as it is, then every keyed vector with each tag appended. */
    buf tagged = {0};
    if (v->input >= 0) {
        want_input = (uint32_t)v->input;
        check_batch(v, v->bytes.p, v->bytes.n);
        put(&tagged, v->bytes.p, v->bytes.n - 4);
        put_u32(&tagged, want_input = 1 - want_input);
        check_batch(v, tagged.p, tagged.n);
        free(tagged.p);
        return;
    }
    for (uint32_t input = 0; input <= 2; input++) {
        tagged.n = 0;
        put(&tagged, v->bytes.p, v->bytes.n);
        put_u32(&tagged, input);
        want_input = input;
        if (input < 2) {
            check_batch(v, tagged.p, tagged.n);
        } else {
            buf out = {0};
            int rc = call(tagged.p, tagged.n, &out, 0);
            if (rc == 0) free(out.p);
            if (rc != BAD_INPUT) fail(v, "input tag 2: want bad-input");
        }
    }
    free(tagged.p);
#else
    check_batch(v, v->bytes.p, v->bytes.n);
#endif
}

/* Encoding an output vector: the SDK's writer must give its bytes. */
static void check_output(const vector *v) {
    cur = v;
    mode = SCRIPT;
    buf in = {0}, out = {0}, k = {0}, s = {0};
    put(&k, "k", 1);
    put(&s, "old state", 9); /* a state no update sets, so every update shows */
#if WEIR_TEST_KEYED
    /* One key per update, each with a state and one record (ts = its index). */
    put_u32(&in, (uint32_t)v->nups);
    for (size_t i = 0; i < v->nups; i++) {
        put_field(&in, &k), put_field(&in, &s);
        k.p[0]++; /* distinct keys */
    }
    put_u32(&in, (uint32_t)(v->nups + v->nchanges));
    for (size_t i = 0; i < v->nups; i++) put_u32(&in, (uint32_t)i), put_i64(&in, (int64_t)i), put_u32(&in, 0);
    for (size_t j = 0; j < v->nchanges; j++) put_u32(&in, v->changes[j].index), put_i64(&in, (int64_t)j), put_u32(&in, 1), put(&in, "t", 1);
#if WEIR_TEST_KEYED == 3
    put_u32(&in, 1), want_input = 1, checking = 1; /* the input tag: the batch came through input 1 */
#endif
#else
    buf empty = {0};
    put(&empty, "", 0);
    put_record(&in, 0, &empty, &empty);
    free(empty.p);
#endif
    int rc = process(in.p, in.n, &out);
    if (rc) {
        fail(v, "process failed with error tag %d", rc - 1);
    } else {
        expect_output(v, "written", &out, v->bytes.p, v->bytes.n);
        free(out.p);
    }
    free(in.p), free(k.p), free(s.p);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s VECTORS_DIR\n", argv[0]);
        return 2;
    }
    const char *input = WEIR_TEST_KEYED == 2 ? "fired-timers" : WEIR_TEST_KEYED ? "keyed" : "plain";
    const char *output = WEIR_TEST_KEYED >= 2 ? "keyed-output-timers" : WEIR_TEST_KEYED ? "keyed-output" : "output";
    DIR *d = opendir(argv[1]);
    if (!d) {
        perror(argv[1]);
        return 2;
    }
    char *names[256];
    size_t count = 0;
    for (struct dirent *e; (e = readdir(d)) && count < 256;) {
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".txt") == 0) {
            names[count] = xrealloc(NULL, len - 3);
            memcpy(names[count], e->d_name, len - 4);
            names[count++][len - 4] = 0;
        }
    }
    closedir(d);
    qsort(names, count, sizeof *names, by_name);

    exports_weir_dataflow_operator_task_info_t info = {0, 1, 128};
    OC(list_tuple2_string_string_t) args = {0};
    exports_weir_dataflow_operator_operator_error_t err;
    if (!exports_weir_dataflow_operator_open(0, &info, &args, &err)) {
        fprintf(stderr, "open failed\n");
        return 1;
    }
    if (declared != TEST_STATE_VERSION || restored_seen != TEST_RESTORED_STATE_VERSION) {
        fprintf(stderr, "FAIL: open declared state version %ld (want %d) and saw restored %d (want %d)\n", declared,
                TEST_STATE_VERSION, restored_seen, TEST_RESTORED_STATE_VERSION);
        failures++;
    }
    int inputs = 0, outputs = 0;
    static vector v; /* large: not on the stack */
    for (size_t i = 0; i < count; i++) {
        if (load(argv[1], names[i], &v) == 0) {
            int before = failures;
            /* Two inputs: the host's two-input vectors and every keyed one with a tag appended. */
            int is_input = strcmp(v.layout, input) == 0 || (WEIR_TEST_KEYED == 3 && strcmp(v.layout, "two-input") == 0);
            if (is_input) check_input(&v), inputs++;
            if (strcmp(v.layout, output) == 0) check_output(&v), outputs++;
            if (failures == before && (is_input || strcmp(v.layout, output) == 0)) printf("ok %s\n", v.name);
        }
        release(&v);
        free(names[i]);
    }
    exports_weir_dataflow_operator_close(0, &err);
    if (!inputs || !outputs) {
        fprintf(stderr, "FAIL: no %s or no %s vectors in %s\n", input, output, argv[1]);
        failures++;
    }
    printf("%s: %d input and %d output vectors, %d failures\n", argv[0], inputs, outputs, failures);
    return failures ? 1 : 0;
}
