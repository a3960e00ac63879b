/* weir.c: the batch layouts of wit/dataflow.wit (operator.process) over the generated
 * bindings. All integers are little-endian (wasm32 is little-endian, so memcpy). */
#include "weir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The generated bindings name their types after the world: operator-component, or
 * timed-operator-component for operators with timers (which also export on-timer). */
#ifdef WEIR_TIMERS
#include "timed_operator_component.h"
#define WB(name) timed_operator_component_##name
#else
#include "operator_component.h"
#define WB(name) operator_component_##name
#endif

extern const weir_operator weir_the_operator;

struct weir_out {
    uint8_t *buf;
    size_t len, cap;
};

struct weir_state {
    const uint8_t *orig; /* NULL: none */
    uint32_t orig_len;
    uint8_t *data; /* owned when set */
    uint32_t len, cap;
    uint8_t update; /* 0 unchanged, 1 set, 2 cleared */
};

static bool is_open;
static size_t out_hint = 256;
static char err_msg[512];
static uint8_t err_kind; /* EXPORTS_..._FAILED or _BAD_INPUT */
static char **arg_names, **arg_values;
static size_t arg_count;

static void set_err(uint8_t kind, const char *msg) {
    err_kind = kind;
    snprintf(err_msg, sizeof err_msg, "%s", msg);
}
int weir_fail(const char *msg) {
    set_err(EXPORTS_WEIR_DATAFLOW_OPERATOR_OPERATOR_ERROR_FAILED, msg);
    return -1;
}
int weir_bad_input(const char *msg) {
    set_err(EXPORTS_WEIR_DATAFLOW_OPERATOR_OPERATOR_ERROR_BAD_INPUT, msg);
    return -1;
}

static void log_at(weir_dataflow_log_level_t level, const char *msg) {
    WB(string_t) s = {(uint8_t *)msg, strlen(msg)};
    weir_dataflow_log_log(level, &s);
}
void weir_log_debug(const char *m) { log_at(WEIR_DATAFLOW_LOG_LEVEL_DEBUG, m); }
void weir_log_info(const char *m) { log_at(WEIR_DATAFLOW_LOG_LEVEL_INFO, m); }
void weir_log_warn(const char *m) { log_at(WEIR_DATAFLOW_LOG_LEVEL_WARN, m); }
void weir_log_error(const char *m) { log_at(WEIR_DATAFLOW_LOG_LEVEL_ERROR, m); }

static void oom(void) {
    weir_log_error("weir: out of memory");
    abort();
}

static inline void reserve(weir_out *o, size_t n) {
    if (o->len + n <= o->cap) return;
    size_t cap = o->cap ? o->cap * 2 : 256;
    while (cap < o->len + n) cap *= 2;
    uint8_t *b = realloc(o->buf, cap);
    if (!b) oom();
    o->buf = b;
    o->cap = cap;
}
static inline void put(weir_out *o, const void *p, size_t n) {
    memcpy(o->buf + o->len, p, n);
    o->len += n;
}
static inline void put_u32(weir_out *o, uint32_t v) { put(o, &v, 4); }

static inline void head(weir_out *o, int64_t ts, const void *key, uint32_t klen, uint32_t vlen) {
    reserve(o, 16 + (size_t)klen + vlen);
    put(o, &ts, 8);
    put_u32(o, klen);
    put(o, key, klen);
    put_u32(o, vlen);
}
void weir_emit(weir_out *o, int64_t ts, const void *key, uint32_t klen, const void *v, uint32_t vlen) {
    head(o, ts, key, klen, vlen);
    put(o, v, vlen);
}
void weir_emit2(weir_out *o, int64_t ts, const void *key, uint32_t klen, const void *v1, uint32_t l1, const void *v2,
                uint32_t l2) {
    head(o, ts, key, klen, l1 + l2);
    put(o, v1, l1);
    put(o, v2, l2);
}
void weir_emit_str(weir_out *o, int64_t ts, const void *key, uint32_t klen, const char *v) {
    weir_emit(o, ts, key, klen, v, (uint32_t)strlen(v));
}
void weir_emit_u64(weir_out *o, int64_t ts, const void *key, uint32_t klen, uint64_t v) {
    char tmp[20];
    int n = 0;
    do {
        tmp[sizeof tmp - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    weir_emit(o, ts, key, klen, tmp + sizeof tmp - n, (uint32_t)n);
}

const uint8_t *weir_state_get(const weir_state *s, uint32_t *len) {
    if (s->update == 1) {
        *len = s->len;
        return s->data ? s->data : (const uint8_t *)"";
    }
    if (s->update == 2 || !s->orig) {
        *len = 0;
        return NULL;
    }
    *len = s->orig_len;
    return s->orig;
}
void weir_state_set(weir_state *s, const void *bytes, uint32_t len) {
    if (len > s->cap) {
        uint8_t *d = realloc(s->data, len);
        if (!d) oom();
        s->data = d;
        s->cap = len;
    }
    if (len) memcpy(s->data, bytes, len);
    s->len = len;
    s->update = 1;
}
void weir_state_clear(weir_state *s) { s->update = 2; }
int weir_state_get_u64(const weir_state *s, uint64_t *v) {
    uint32_t len;
    const uint8_t *b = weir_state_get(s, &len);
    if (!b) {
        *v = 0;
        return 0;
    }
    if (len != 8) return weir_bad_input("state is not a u64 (8 bytes)");
    memcpy(v, b, 8);
    return 0;
}
void weir_state_set_u64(weir_state *s, uint64_t v) { weir_state_set(s, &v, 8); }

/* ---- timers and clock ---- */

typedef struct timer_change {
    uint8_t kind; /* 2 * domain + (0 set | 1 delete), the layout's kind byte */
    uint32_t key_index;
    int64_t ts;
} timer_change;

struct weir_timers {
    uint32_t key_index; /* the current key */
    timer_change *changes;
    size_t len, cap;
};

static void timer_change_add(weir_timers *t, uint8_t kind, int64_t ts) {
    /* Registering the same timer for every record of a key is common: a change that the
     * nearest earlier change of the same timer (within a few) already makes is left out,
     * as the Rust SDK does; the host would ignore it after reading it. */
    size_t back = t->len < 4 ? t->len : 4;
    for (size_t i = t->len; i > t->len - back; i--) {
        const timer_change *c = &t->changes[i - 1];
        if (c->key_index == t->key_index && c->ts == ts && (c->kind >> 1) == (kind >> 1)) {
            if (c->kind == kind) return;
            break;
        }
    }
    if (t->len == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        timer_change *c = realloc(t->changes, cap * sizeof *c);
        if (!c) oom();
        t->changes = c;
        t->cap = cap;
    }
    t->changes[t->len++] = (timer_change){kind, t->key_index, ts};
}
void weir_register_event_time_timer(weir_timers *t, int64_t ts) { timer_change_add(t, 0, ts); }
void weir_delete_event_time_timer(weir_timers *t, int64_t ts) { timer_change_add(t, 1, ts); }
void weir_register_processing_time_timer(weir_timers *t, int64_t ts) { timer_change_add(t, 2, ts); }
void weir_delete_processing_time_timer(weir_timers *t, int64_t ts) { timer_change_add(t, 3, ts); }

/* The host sets both once per call, so they are read at most once per call. */
static bool have_watermark, have_processing_time;
static int64_t watermark, processing_time;
int64_t weir_current_watermark(void) {
    if (!have_watermark) watermark = weir_dataflow_clock_current_watermark(), have_watermark = true;
    return watermark;
}
int64_t weir_current_processing_time(void) {
    if (!have_processing_time) processing_time = weir_dataflow_clock_current_processing_time(), have_processing_time = true;
    return processing_time;
}

const char *weir_arg(const char *name, const char *dflt) {
    for (size_t i = 0; i < arg_count; i++)
        if (strcmp(arg_names[i], name) == 0) return arg_values[i];
    return dflt;
}

int weir_postcard_u64(const uint8_t *b, uint32_t len, uint64_t *v, uint32_t *used) {
    uint64_t x = 0;
    for (uint32_t i = 0; i < len && i < 10; i++) {
        x |= (uint64_t)(b[i] & 0x7f) << (7 * i);
        if (!(b[i] & 0x80)) {
            *v = x;
            if (used) *used = i + 1;
            return 0;
        }
    }
    return -1;
}
int weir_postcard_str(const uint8_t *b, uint32_t len, const char **s, uint32_t *s_len) {
    uint64_t n;
    uint32_t used;
    if (weir_postcard_u64(b, len, &n, &used) || n > len - used) return -1;
    *s = (const char *)b + used;
    *s_len = (uint32_t)n;
    return 0;
}

/* ---- exported entry points ---- */

static bool error_out(exports_weir_dataflow_operator_operator_error_t *err) {
    err->tag = err_kind;
    size_t n = strlen(err_msg);
    uint8_t *p = malloc(n ? n : 1);
    if (!p) oom();
    memcpy(p, err_msg, n);
    if (err_kind == EXPORTS_WEIR_DATAFLOW_OPERATOR_OPERATOR_ERROR_BAD_INPUT)
        err->val.bad_input = (WB(string_t)){p, n};
    else
        err->val.failed = (WB(string_t)){p, n};
    return false;
}
static bool unknown(uint32_t op, exports_weir_dataflow_operator_operator_error_t *err) {
    err->tag = EXPORTS_WEIR_DATAFLOW_OPERATOR_OPERATOR_ERROR_UNKNOWN_OPERATOR;
    err->val.unknown_operator = op;
    return false;
}
static char *dup_str(const WB(string_t) *s) {
    char *p = malloc(s->len + 1);
    if (!p) oom();
    memcpy(p, s->ptr, s->len);
    p[s->len] = 0;
    return p;
}

bool exports_weir_dataflow_operator_open(uint32_t op, exports_weir_dataflow_operator_task_info_t *info,
                                         WB(list_tuple2_string_string_t) *args,
                                         exports_weir_dataflow_operator_operator_error_t *err) {
    if (op != 0) {
        WB(list_tuple2_string_string_free)(args);
        return unknown(op, err);
    }
    arg_count = args->len;
    arg_names = calloc(arg_count + 1, sizeof(char *));
    arg_values = calloc(arg_count + 1, sizeof(char *));
    if (!arg_names || !arg_values) oom();
    for (size_t i = 0; i < arg_count; i++) {
        arg_names[i] = dup_str(&args->ptr[i].f0);
        arg_values[i] = dup_str(&args->ptr[i].f1);
    }
    WB(list_tuple2_string_string_free)(args);
    weir_dataflow_state_version_declare(weir_the_operator.state_version);
    uint32_t restored;
    bool has_restored = weir_dataflow_state_version_restored(&restored);
    weir_context ctx = {info->subtask, info->parallelism, info->max_parallelism, arg_count,
                        (const char *const *)arg_names, (const char *const *)arg_values, has_restored ? &restored : NULL};
    set_err(EXPORTS_WEIR_DATAFLOW_OPERATOR_OPERATOR_ERROR_FAILED, "open failed");
    if (weir_the_operator.open && weir_the_operator.open(&ctx) != 0) return error_out(err);
    is_open = true;
    return true;
}

bool exports_weir_dataflow_operator_close(uint32_t op, exports_weir_dataflow_operator_operator_error_t *err) {
    if (op != 0 || !is_open) return unknown(op, err);
    is_open = false;
    set_err(EXPORTS_WEIR_DATAFLOW_OPERATOR_OPERATOR_ERROR_FAILED, "close failed");
    if (weir_the_operator.close && weir_the_operator.close() != 0) return error_out(err);
    return true;
}

#define NEED(n, what)                                                                                                    \
    do {                                                                                                                 \
        if ((size_t)(n) > (size_t)(end - p)) {                                                                           \
            rc = weir_bad_input("batch ends inside " what);                                                              \
            goto done;                                                                                                   \
        }                                                                                                                \
    } while (0)

static inline uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static int process_plain(const uint8_t *p, const uint8_t *end, weir_out *o) {
    int rc = 0;
    weir_record r;
    while (p < end) {
        NEED(12, "a record");
        memcpy(&r.ts, p, 8);
        r.key_len = rd32(p + 8);
        p += 12;
        NEED((size_t)r.key_len + 4, "a key");
        r.key = p;
        p += r.key_len;
        r.value_len = rd32(p);
        p += 4;
        NEED(r.value_len, "a value");
        r.value = p;
        p += r.value_len;
        if ((rc = weir_the_operator.process(&r, o)) != 0) goto done;
    }
done:
    return rc;
}

/* A keyed call: the key table, then records (process) or fired timers (on-timer); the
 * output's records, one state update per key, then the timer changes, if any. */
static int keyed_call(const uint8_t *p, const uint8_t *end, weir_out *o, bool fired) {
    int rc = 0;
    uint32_t input = 0;
    weir_state *states = NULL;
    const uint8_t **keys = NULL;
    uint32_t *key_lens = NULL;
    uint32_t kc = 0;
    weir_timers timers = {0};
    if (weir_the_operator.process_co && !fired) {
        /* A two-input operator's batch ends with the input its records came through. */
        NEED(4, "the input tag");
        input = rd32(end - 4);
        end -= 4;
        if (input > 1) {
            rc = weir_bad_input("input tag is neither 0 nor 1 (a two-input operator has two inputs)");
            goto done;
        }
    }
    NEED(4, "the key count");
    kc = rd32(p);
    p += 4;
    if (kc > (size_t)(end - p) / 8) {
        rc = weir_bad_input("key count larger than the batch");
        goto done;
    }
    states = calloc(kc ? kc : 1, sizeof *states);
    keys = malloc((kc ? kc : 1) * sizeof *keys);
    key_lens = malloc((kc ? kc : 1) * sizeof *key_lens);
    if (!states || !keys || !key_lens) oom();
    for (uint32_t i = 0; i < kc; i++) {
        NEED(4, "a key length");
        key_lens[i] = rd32(p);
        p += 4;
        NEED((size_t)key_lens[i] + 4, "a key");
        keys[i] = p;
        p += key_lens[i];
        uint32_t sl = rd32(p);
        p += 4;
        if (sl != 0xFFFFFFFFu) {
            NEED(sl, "a state");
            states[i].orig = p;
            states[i].orig_len = sl;
            p += sl;
        }
    }
    NEED(4, "the record or timer count");
    uint32_t count = rd32(p);
    p += 4;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t ki;
        if (fired) {
            NEED(13, "a timer");
            weir_timer t;
            ki = rd32(p);
            memcpy(&t.ts, p + 4, 8);
            uint8_t domain = p[12];
            p += 13;
            if (ki >= kc) {
                rc = weir_bad_input("timer key index out of range");
                goto done;
            }
            if (domain > 1) {
                rc = weir_bad_input("timer domain is neither event (0) nor processing time (1)");
                goto done;
            }
            t.domain = (weir_time_domain)domain;
            t.key = keys[ki];
            t.key_len = key_lens[ki];
            timers.key_index = ki;
            if (!weir_the_operator.on_timer) {
                rc = weir_fail("a timer fired but the operator has no .on_timer");
                goto done;
            }
            if ((rc = weir_the_operator.on_timer(&t, &states[ki], &timers, o)) != 0) goto done;
        } else {
            weir_record r;
            NEED(16, "a record");
            ki = rd32(p);
            memcpy(&r.ts, p + 4, 8);
            r.value_len = rd32(p + 12);
            p += 16;
            NEED(r.value_len, "a value");
            r.value = p;
            p += r.value_len;
            if (ki >= kc) {
                rc = weir_bad_input("key index out of range");
                goto done;
            }
            r.key = keys[ki];
            r.key_len = key_lens[ki];
            timers.key_index = ki;
            if (weir_the_operator.process_co)
                rc = weir_the_operator.process_co(input, &r, &states[ki], &timers, o);
            else if (weir_the_operator.process_timed)
                rc = weir_the_operator.process_timed(&r, &states[ki], &timers, o);
            else
                rc = weir_the_operator.process_keyed(&r, &states[ki], o);
            if (rc != 0) goto done;
        }
    }
    if (p != end) {
        rc = weir_bad_input(fired ? "bytes after the last timer" : "bytes after the last record");
        goto done;
    }
    uint32_t records_len = (uint32_t)(o->len - 4);
    memcpy(o->buf, &records_len, 4);
    for (uint32_t i = 0; i < kc; i++) {
        weir_state *s = &states[i];
        reserve(o, 5 + (s->update == 1 ? s->len : 0));
        uint8_t tag = s->update == 2 && !s->orig ? 0 : s->update;
        o->buf[o->len++] = tag;
        if (tag == 1) {
            put_u32(o, s->len);
            if (s->len) put(o, s->data, s->len);
        }
    }
    /* No changes, no trailer: the output is then exactly a plain keyed output. */
    if (timers.len) {
        reserve(o, 4 + 13 * timers.len);
        put_u32(o, (uint32_t)timers.len);
        for (size_t i = 0; i < timers.len; i++) {
            o->buf[o->len++] = timers.changes[i].kind;
            put_u32(o, timers.changes[i].key_index);
            put(o, &timers.changes[i].ts, 8);
        }
    }
done:
    if (states)
        for (uint32_t i = 0; i < kc; i++) free(states[i].data);
    free(states);
    free(keys);
    free(key_lens);
    free(timers.changes);
    return rc;
}

/* One call of process or on-timer: the output buffer, errors, the clock cache. */
static bool call(WB(list_u8_t) *batch, WB(list_u8_t) *ret, exports_weir_dataflow_operator_operator_error_t *err, bool fired) {
    weir_out o = {malloc(out_hint), 0, out_hint};
    if (!o.buf) oom();
    o.len = 4;
    int rc;
    const uint8_t *p = batch->ptr, *end = batch->ptr + batch->len;
    have_watermark = have_processing_time = false;
    /* The message of a callback that fails without weir_fail; set once per batch, since
     * formatting it per record costs more than a trivial operator's work. */
    set_err(EXPORTS_WEIR_DATAFLOW_OPERATOR_OPERATOR_ERROR_FAILED, "operator failed");
    if (fired || weir_the_operator.process_keyed || weir_the_operator.process_timed || weir_the_operator.process_co) {
        rc = keyed_call(p, end, &o, fired);
    } else {
        rc = process_plain(p, end, &o);
        uint32_t records_len = (uint32_t)(o.len - 4);
        memcpy(o.buf, &records_len, 4);
    }
    WB(list_u8_free)(batch);
    if (rc != 0) {
        free(o.buf);
        return error_out(err);
    }
    out_hint = o.len + o.len / 8 + 64;
    ret->ptr = o.buf;
    ret->len = o.len;
    return true;
}

bool exports_weir_dataflow_operator_process(uint32_t op, WB(list_u8_t) *batch, WB(list_u8_t) *ret,
                                            exports_weir_dataflow_operator_operator_error_t *err) {
    if (op != 0 || !is_open) {
        WB(list_u8_free)(batch);
        return unknown(op, err);
    }
    return call(batch, ret, err, false);
}

#ifdef WEIR_TIMERS
bool exports_weir_dataflow_timers_on_timer(uint32_t op, WB(list_u8_t) *batch, WB(list_u8_t) *ret,
                                           exports_weir_dataflow_timers_operator_error_t *err) {
    if (op != 0 || !is_open) {
        WB(list_u8_free)(batch);
        return unknown(op, err);
    }
    return call(batch, ret, err, true);
}
#endif
