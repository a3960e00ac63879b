// Orders joined with their payments per order id (JavaScript, a two-input keyed
// process: Flink's KeyedCoProcessFunction). Input 0 carries orders (value: the item),
// input 1 payments (value: the amount), both keyed by order id; an id has at most one of
// each. Whichever side comes first waits in the id's value state (`o` or `p`, its time,
// `,`, its value) with an event-time timer WAIT ms after it; the other side takes it
// out, deletes the timer and emits `<item> paid <amount>`. A timer that fires finds its
// side still alone: `<item> unpaid` or `payment <amount> without order`.
import * as weir from "./weir.js";

const WAIT = 30000;
const SIDES = "op";

const join = weir.keyedCoProcess(
  (input, key, state, value, ts, ctx) => {
    const side = SIDES[input];
    if (state.value === null) {
      state.update(`${side}${ts},${weir.text(value)}`);
      ctx.registerEventTimeTimer(Number(ts) + WAIT);
      return;
    }
    const waiting = weir.text(state.value);
    if (waiting[0] === side) throw weir.badInput(`a second ${input === 0 ? "order" : "payment"} for id ${weir.text(key)}`);
    const comma = waiting.indexOf(",");
    ctx.deleteEventTimeTimer(Number(waiting.slice(1, comma)) + WAIT);
    state.clear();
    const other = waiting.slice(comma + 1);
    const [item, amount] = input === 0 ? [weir.text(value), other] : [other, weir.text(value)];
    ctx.emit(key, `${item} paid ${amount}`);
  },
  (ts, domain, key, state, ctx) => {
    if (state.value === null) return;
    const waiting = weir.text(state.value);
    state.clear();
    const value = waiting.slice(waiting.indexOf(",") + 1);
    ctx.emit(key, waiting[0] === "o" ? `${value} unpaid` : `payment ${value} without order`);
  },
);

export const { operator, timers } = weir.timedComponent(join);
