// Map benchmark operator: same ts and key, value = "v:" + value.
import * as weir from "./weir.js";

const TAG = weir.utf8("v:");

export const operator = weir.component(weir.mapValues((v) => [TAG, v]));
