/* A stand-in for the timed_operator_component.h that `wit-bindgen c` generates for world
 * timed-operator-component: the types of operator_component.h under this world's prefix,
 * plus the timers export (see operator_component.h). */
#ifndef TIMED_OPERATOR_COMPONENT_H
#define TIMED_OPERATOR_COMPONENT_H

#define OC(name) timed_operator_component_##name
#include "operator_component.h"

/* Export weir:dataflow/timers. */
typedef exports_weir_dataflow_operator_operator_error_t exports_weir_dataflow_timers_operator_error_t;
bool exports_weir_dataflow_timers_on_timer(uint32_t op, OC(list_u8_t) *batch, OC(list_u8_t) *ret,
                                           exports_weir_dataflow_timers_operator_error_t *err);

#endif
