// Pipeline stage 3 (JavaScript): keep orders with amount >= `min-amount` (open
// argument, default 10). Input value: UTF-8 `customer,country,amount,region`.
// Output: key = region (UTF-8), value = amount as decimal text, same ts.
import * as weir from "./weir.js";

let minAmount = 10;

function open({ args }) {
  const m = args["min-amount"] ?? "10";
  minAmount = Number(m);
  if (!Number.isInteger(minAmount)) throw weir.failed(`min-amount=${m} is not an integer`);
}

export const operator = weir.component(
  weir.flatMap((key, value, ts, emit) => {
    const [, , amount, region] = weir.text(value).split(",");
    if (Number(amount) >= minAmount) emit(region, amount);
  }),
  { open },
);
