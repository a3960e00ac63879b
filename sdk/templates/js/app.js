// {{name}}: a Weir operator (component of world `operator-component`).
// Every record comes out with its value in uppercase; key and ts unchanged.
import * as weir from "./weir.js";

export const operator = weir.component(weir.mapValues((value) => weir.text(value).toUpperCase()));
