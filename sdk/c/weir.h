/* weir.h: write one Weir operator in C (a component of world `operator-component`).
 *
 *   #include "weir.h"
 *
 *   static int tag(const weir_record *r, weir_out *out) {
 *       weir_emit2(out, r->ts, r->key, r->key_len, "v:", 2, r->value, r->value_len);
 *       return 0;
 *   }
 *   WEIR_OPERATOR(.process = tag);
 *
 * Records are (key, value, ts) with opaque byte keys and values. A keyed operator sets
 * `.process_keyed` instead and sees the value state of each record's key (bytes, or
 * absent); its input edge must be key-by. Return 0 from a callback, or
 * `weir_fail("...")` / `weir_bad_input("...")` to fail the operator with a message.
 *
 * Timers (Flink's KeyedProcessFunction): set `.process_timed` and `.on_timer` instead of
 * `.process_keyed`. Both see the key's value state and a `weir_timers` handle for the
 * current key, to register or delete event-time and processing-time timers; `.on_timer`
 * runs when one fires, with its time and domain. Build with -DWEIR_TIMERS against the
 * bindings of world `timed-operator-component` (which export `timers.on-timer`).
 *
 * Two inputs (Flink's KeyedCoProcessFunction; a manifest node with `inputs2`): set
 * `.process_co` (and `.on_timer` if it sets timers) instead. It is `.process_timed` with
 * the input each record came through, 0 (`inputs`) or 1 (`inputs2`); both inputs share
 * the key's state and timers. Without timers it also builds for `operator-component`.
 *
 * State versions: `.state_version = N` declares the format of the state the operator
 * writes (recorded with every snapshot of it; default 0), and open's context carries
 * `restored_state_version`: the version declared by the code whose state the operator
 * starts from (a restore from a checkpoint or savepoint, or the code a live swap
 * replaced), NULL when it starts without restored state.
 *
 * The bindings (operator_component.h/.c) are generated from wit/ by `wit-bindgen c` at
 * build time; weir.c implements the batch layouts of wit/dataflow.wit on top of them.
 */
#ifndef WEIR_H
#define WEIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One input record; pointers are valid during the callback only. */
typedef struct weir_record {
    int64_t ts;
    const uint8_t *key;
    uint32_t key_len;
    const uint8_t *value;
    uint32_t value_len;
} weir_record;

/* The output batch being written. */
typedef struct weir_out weir_out;

/* The value state of one key during a keyed batch. */
typedef struct weir_state weir_state;

/* What open is told. Argument names and values are NUL-terminated copies. */
typedef struct weir_context {
    uint32_t subtask, parallelism, max_parallelism;
    size_t arg_count;
    const char *const *arg_names;
    const char *const *arg_values;
    /* The state version the restored state was written with; NULL: nothing restored. */
    const uint32_t *restored_state_version;
} weir_context;

/* The timers of the current key during a process_timed or on_timer callback. */
typedef struct weir_timers weir_timers;

/* Which clock a timer follows. */
typedef enum weir_time_domain { WEIR_EVENT_TIME = 0, WEIR_PROCESSING_TIME = 1 } weir_time_domain;

/* A timer that fired; the key pointer is valid during the callback only. */
typedef struct weir_timer {
    int64_t ts;
    weir_time_domain domain;
    const uint8_t *key;
    uint32_t key_len;
} weir_timer;

typedef int (*weir_process_fn)(const weir_record *r, weir_out *out);
typedef int (*weir_process_keyed_fn)(const weir_record *r, weir_state *state, weir_out *out);
typedef int (*weir_process_timed_fn)(const weir_record *r, weir_state *state, weir_timers *timers, weir_out *out);
/* A record of input 0 or 1 of a two-input operator. */
typedef int (*weir_process_co_fn)(uint32_t input, const weir_record *r, weir_state *state, weir_timers *timers, weir_out *out);
/* Records emitted here usually carry the timer's time (t->ts). */
typedef int (*weir_on_timer_fn)(const weir_timer *t, weir_state *state, weir_timers *timers, weir_out *out);

typedef struct weir_operator {
    /* Exactly one of these four. */
    weir_process_fn process;
    weir_process_keyed_fn process_keyed;
    weir_process_timed_fn process_timed; /* with .on_timer, built with -DWEIR_TIMERS */
    weir_on_timer_fn on_timer;
    weir_process_co_fn process_co; /* two inputs; .on_timer as for .process_timed */
    /* Optional. */
    int (*open)(const weir_context *ctx);
    int (*close)(void);
    uint32_t state_version; /* the format of the state it writes, declared at open */
} weir_operator;

/* Defines the component's operator (operator id 0). Use once. */
#define WEIR_OPERATOR(...) const weir_operator weir_the_operator = {__VA_ARGS__}

/* Emits a record. */
void weir_emit(weir_out *out, int64_t ts, const void *key, uint32_t key_len, const void *value, uint32_t value_len);
/* Emits a record whose value is v1 followed by v2 (no intermediate copy). */
void weir_emit2(weir_out *out, int64_t ts, const void *key, uint32_t key_len, const void *v1, uint32_t l1, const void *v2,
                uint32_t l2);
/* Emits a record whose value is a NUL-terminated string. */
void weir_emit_str(weir_out *out, int64_t ts, const void *key, uint32_t key_len, const char *value);
/* Emits a record whose value is `v` in decimal text. */
void weir_emit_u64(weir_out *out, int64_t ts, const void *key, uint32_t key_len, uint64_t v);

/* The state bytes (NULL when the key has no state) and their length. */
const uint8_t *weir_state_get(const weir_state *s, uint32_t *len);
/* Replaces the state (copied). */
void weir_state_set(weir_state *s, const void *bytes, uint32_t len);
/* Removes the state. */
void weir_state_clear(weir_state *s);
/* The state as a little-endian u64 (0 when absent; -1 and weir_bad_input on another length). */
int weir_state_get_u64(const weir_state *s, uint64_t *v);
void weir_state_set_u64(weir_state *s, uint64_t v);

/* Timers of the current key. A key has at most one timer per time and domain: setting it
 * again does nothing; a fired timer is gone. */
void weir_register_event_time_timer(weir_timers *t, int64_t ts);
void weir_delete_event_time_timer(weir_timers *t, int64_t ts);
void weir_register_processing_time_timer(weir_timers *t, int64_t ts);
void weir_delete_processing_time_timer(weir_timers *t, int64_t ts);

/* The watermark of this operator's input (INT64_MIN before the first one), and
 * processing time (ms since the Unix epoch); both read from the host once per call. */
int64_t weir_current_watermark(void);
int64_t weir_current_processing_time(void);

/* The value of argument `name` given at open, or `dflt`. */
const char *weir_arg(const char *name, const char *dflt);

/* Report a failure: return their result from a callback (they return -1). */
int weir_fail(const char *msg);
int weir_bad_input(const char *msg);

/* The host's log. */
void weir_log_debug(const char *msg);
void weir_log_info(const char *msg);
void weir_log_warn(const char *msg);
void weir_log_error(const char *msg);

/* Postcard decoding of the host sources' values: a varint (generator numbers) and a
 * string (file lines). Return 0, or -1 on malformed input. */
int weir_postcard_u64(const uint8_t *b, uint32_t len, uint64_t *v, uint32_t *used);
int weir_postcard_str(const uint8_t *b, uint32_t len, const char **s, uint32_t *s_len);

#endif
