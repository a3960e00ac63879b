/* A stand-in for the operator_component.h that `wit-bindgen c` generates from wit/ at
 * build time, declaring only what weir.c uses, with the generator's names and shapes.
 * It lets weir.c compile natively for the vector test (vectors.c), which implements the
 * imports below and calls the exports the way the component's canonical ABI glue would.
 * If weir.c starts using more of the bindings, add it here.
 *
 * The generator prefixes type names with the world's name; timed_operator_component.h
 * includes this file with OC set to that world's prefix. */
#ifndef OPERATOR_COMPONENT_H
#define OPERATOR_COMPONENT_H

#ifndef OC
#define OC(name) operator_component_##name
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct OC(string_t) {
    uint8_t *ptr;
    size_t len;
} OC(string_t);

typedef struct OC(tuple2_string_string_t) {
    OC(string_t) f0;
    OC(string_t) f1;
} OC(tuple2_string_string_t);

typedef struct OC(list_tuple2_string_string_t) {
    OC(tuple2_string_string_t) *ptr;
    size_t len;
} OC(list_tuple2_string_string_t);

typedef struct OC(list_u8_t) {
    uint8_t *ptr;
    size_t len;
} OC(list_u8_t);

/* Import weir:dataflow/log. */
typedef uint8_t weir_dataflow_log_level_t;
#define WEIR_DATAFLOW_LOG_LEVEL_DEBUG 0
#define WEIR_DATAFLOW_LOG_LEVEL_INFO 1
#define WEIR_DATAFLOW_LOG_LEVEL_WARN 2
#define WEIR_DATAFLOW_LOG_LEVEL_ERROR 3
void weir_dataflow_log_log(weir_dataflow_log_level_t level, OC(string_t) *message);

/* Import weir:dataflow/clock. */
int64_t weir_dataflow_clock_current_watermark(void);
int64_t weir_dataflow_clock_current_processing_time(void);

/* Import weir:dataflow/state-version. */
void weir_dataflow_state_version_declare(uint32_t version);
bool weir_dataflow_state_version_restored(uint32_t *ret);

/* Export weir:dataflow/operator. */
typedef struct exports_weir_dataflow_operator_task_info_t {
    uint32_t subtask;
    uint32_t parallelism;
    uint32_t max_parallelism;
} exports_weir_dataflow_operator_task_info_t;

typedef struct exports_weir_dataflow_operator_operator_error_t {
    uint8_t tag;
    union {
        uint32_t unknown_operator;
        OC(string_t) bad_input;
        OC(string_t) failed;
    } val;
} exports_weir_dataflow_operator_operator_error_t;

#define EXPORTS_WEIR_DATAFLOW_OPERATOR_OPERATOR_ERROR_UNKNOWN_OPERATOR 0
#define EXPORTS_WEIR_DATAFLOW_OPERATOR_OPERATOR_ERROR_BAD_INPUT 1
#define EXPORTS_WEIR_DATAFLOW_OPERATOR_OPERATOR_ERROR_FAILED 2

/* Free the list's memory (the generated glue owns arguments passed to exports). */
void OC(list_u8_free)(OC(list_u8_t) *ptr);
void OC(list_tuple2_string_string_free)(OC(list_tuple2_string_string_t) *ptr);

bool exports_weir_dataflow_operator_open(uint32_t op, exports_weir_dataflow_operator_task_info_t *info,
                                         OC(list_tuple2_string_string_t) *args,
                                         exports_weir_dataflow_operator_operator_error_t *err);
bool exports_weir_dataflow_operator_process(uint32_t op, OC(list_u8_t) *batch,
                                            OC(list_u8_t) *ret,
                                            exports_weir_dataflow_operator_operator_error_t *err);
bool exports_weir_dataflow_operator_close(uint32_t op, exports_weir_dataflow_operator_operator_error_t *err);

#endif
