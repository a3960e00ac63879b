//! Barrier alignment as a pure decision: which of a subtask's inputs are held back, and
//! when a checkpoint's barrier has arrived on all of them. `exchange::Inputs` moves
//! the messages; this module says what barriers and ends mean, as Flink's aligned
//! barrier handler (`SingleCheckpointBarrierHandler`) does:
//!
//! - An input that delivered the pending checkpoint's barrier is held back (not read,
//!   so its bounded channel fills and its producer blocks) until every input delivered
//!   it: the snapshot then sees exactly the records before the barrier on every input.
//! - An input that ended counts as aligned for every checkpoint from then on: its
//!   finished producer stands in with what it held at its end, so an input ending
//!   mid-alignment completes the alignment if it was the last one missing.
//! - A newer barrier supersedes the pending checkpoint, which can no longer complete
//!   (its producers skipped it; the JobManager gives up on it): the inputs held for
//!   it are released and alignment starts over for the newer one. Barriers of older
//!   checkpoints than the pending one are dropped.
//!
//! Cancellation is not a decision made here: the channel plumbing notices it (the
//! job's cancel flag, an abandoned or vanished producer) and the subtask stops,
//! dropping its alignment with it.
//!
//! The decisions rely on what the channels guarantee: each input is FIFO, its
//! producer sends barriers in increasing checkpoint order and nothing after its end,
//! and the caller reads only [`Alignment::readable`] inputs. So no memory of completed
//! checkpoints is needed: a barrier older than one already aligned cannot arrive.
//!

/// What the reader of a subtask's inputs does after a barrier or an end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Keep reading the readable inputs.
    Continue,
    /// Every input delivered the barrier of checkpoint `id` or ended: snapshot now.
    /// Every held input is released.
    Aligned(u64),
    /// Every input ended: there are no more records or barriers.
    End,
}

/// The alignment state of a subtask's inputs, numbered `0..n`.
///
/// Between calls, a pending checkpoint always leaves at least one input readable
/// (the moment none would be, the checkpoint is aligned and everything released), so
/// [`readable`](Alignment::readable) is empty only once every input ended.
#[derive(Debug, Clone)]
pub struct Alignment {
    /// Per input: delivered its end, so it is never read again.
    ended: Vec<bool>,
    /// Per input: delivered the pending checkpoint's barrier, so it is not read until
    /// that checkpoint is aligned or superseded. Only ever set while `pending` is.
    held: Vec<bool>,
    /// The checkpoint whose barrier some input delivered and others have yet to.
    pending: Option<u64>,
}

impl Alignment {
    /// Alignment over `inputs` inputs, none of them ended or held. With no inputs at
    /// all, everything has ended from the start.
    pub fn new(inputs: usize) -> Self {
        Self { ended: vec![false; inputs], held: vec![false; inputs], pending: None }
    }

    /// How many inputs there are.
    pub fn inputs(&self) -> usize {
        self.ended.len()
    }

    /// The checkpoint being aligned, if any.
    pub fn pending(&self) -> Option<u64> {
        self.pending
    }

    /// True while `input` is held back for the pending checkpoint.
    pub fn is_blocked(&self, input: usize) -> bool {
        self.held[input]
    }

    /// True once `input` delivered its end.
    pub fn is_ended(&self, input: usize) -> bool {
        self.ended[input]
    }

    /// True once every input ended.
    pub fn is_finished(&self) -> bool {
        self.ended.iter().all(|&e| e)
    }

    /// The inputs to read from now, in input order: neither ended nor held back.
    pub fn readable(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.inputs()).filter(|&i| !self.ended[i] && !self.held[i])
    }

    /// `input` delivered the barrier of checkpoint `id`. `input` must be readable.
    pub fn on_barrier(&mut self, input: usize, id: u64) -> Decision {
        debug_assert!(!self.ended[input] && !self.held[input], "barrier {id} from input {input}, which is not being read");
        match self.pending {
            // Left over from a checkpoint a newer barrier already superseded.
            Some(pending) if id < pending => return Decision::Continue,
            Some(pending) if id == pending => self.held[input] = true,
            // The first barrier of a checkpoint, or one newer than the pending
            // checkpoint, which can then no longer complete: release what was held
            // for it, whose records after its barrier belong to the newer one.
            _ => {
                self.pending = Some(id);
                self.held.iter_mut().for_each(|h| *h = false);
                self.held[input] = true;
            }
        }
        self.settle()
    }

    /// `input` delivered its end. `input` must be readable.
    pub fn on_end(&mut self, input: usize) -> Decision {
        debug_assert!(!self.ended[input] && !self.held[input], "end of input {input}, which is not being read");
        self.ended[input] = true;
        self.settle()
    }

    /// Completes the pending checkpoint once every input delivered its barrier or
    /// ended, or ends when every input did.
    fn settle(&mut self) -> Decision {
        if let Some(id) = self.pending
            && self.ended.iter().zip(&self.held).all(|(&e, &h)| e || h)
        {
            self.pending = None;
            self.held.iter_mut().for_each(|h| *h = false);
            return Decision::Aligned(id);
        }
        if self.is_finished() { Decision::End } else { Decision::Continue }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an input delivers next.
    #[derive(Debug, Clone, Copy)]
    enum Delivery {
        Barrier(u64),
        End,
    }

    fn deliver(a: &mut Alignment, input: usize, d: Delivery) -> Decision {
        match d {
            Delivery::Barrier(id) => a.on_barrier(input, id),
            Delivery::End => a.on_end(input),
        }
    }

    fn permutations(n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![vec![]];
        }
        let mut all = Vec::new();
        for shorter in permutations(n - 1) {
            for at in 0..=shorter.len() {
                let mut p = shorter.clone();
                p.insert(at, n - 1);
                all.push(p);
            }
        }
        all
    }

    fn blocked(a: &Alignment) -> Vec<usize> {
        (0..a.inputs()).filter(|&i| a.is_blocked(i)).collect()
    }

    fn readable(a: &Alignment) -> Vec<usize> {
        a.readable().collect()
    }

    #[test]
    fn permutations_cover_every_order() {
        assert_eq!(permutations(3).len(), 6);
        let mut four = permutations(4);
        four.sort();
        four.dedup();
        assert_eq!(four.len(), 24);
    }

    #[test]
    fn a_single_input_aligns_at_its_barrier() {
        let mut a = Alignment::new(1);
        assert_eq!(a.on_barrier(0, 1), Decision::Aligned(1));
        assert_eq!(readable(&a), [0], "released right away");
        assert_eq!(a.on_barrier(0, 2), Decision::Aligned(2));
        assert_eq!(a.on_end(0), Decision::End);
        assert!(a.is_finished());
        assert_eq!(readable(&a), [] as [usize; 0]);
    }

    #[test]
    fn no_inputs_have_ended_from_the_start() {
        let a = Alignment::new(0);
        assert!(a.is_finished());
        assert_eq!(a.readable().count(), 0);
    }

    /// Barrier 1 on three inputs in each of the six orders: each input is held from
    /// its barrier on, and the last one aligns and releases them all.
    #[test]
    fn barriers_align_in_every_arrival_order() {
        for order in permutations(3) {
            let mut a = Alignment::new(3);
            for (k, &i) in order.iter().enumerate() {
                let last = k == order.len() - 1;
                let decision = a.on_barrier(i, 1);
                if last {
                    assert_eq!(decision, Decision::Aligned(1), "order {order:?}");
                    assert_eq!(blocked(&a), [] as [usize; 0], "order {order:?}");
                    assert_eq!(a.pending(), None);
                } else {
                    assert_eq!(decision, Decision::Continue, "order {order:?}");
                    let mut held = order[..=k].to_vec();
                    held.sort();
                    assert_eq!(blocked(&a), held, "order {order:?}");
                    assert!(readable(&a).iter().all(|r| !held.contains(r)), "order {order:?}");
                    assert_eq!(a.pending(), Some(1));
                }
            }
            assert_eq!(readable(&a), [0, 1, 2], "order {order:?}");
        }
    }

    /// Every input either delivers barrier 1 or ends, in every order, for up to four
    /// inputs: the last delivery aligns the checkpoint if any input delivered its
    /// barrier and ends the inputs otherwise; before it, everything that delivered the
    /// barrier is held and nothing is decided.
    #[test]
    fn barriers_and_ends_in_every_arrival_order() {
        for n in 1..=4 {
            for order in permutations(n) {
                for ends in 0..1u32 << n {
                    let delivery = |i: usize| if ends & (1 << i) != 0 { Delivery::End } else { Delivery::Barrier(1) };
                    let case = format!("order {order:?}, ending {ends:#b}");
                    let mut a = Alignment::new(n);
                    for (k, &i) in order.iter().enumerate() {
                        let decision = deliver(&mut a, i, delivery(i));
                        let delivered = &order[..=k];
                        if k < n - 1 {
                            assert_eq!(decision, Decision::Continue, "{case}");
                            let held: Vec<usize> = (0..n).filter(|i| delivered.contains(i) && ends & (1 << i) == 0).collect();
                            assert_eq!(blocked(&a), held, "{case}");
                        } else if ends == (1 << n) - 1 {
                            assert_eq!(decision, Decision::End, "{case}");
                        } else {
                            assert_eq!(decision, Decision::Aligned(1), "{case}");
                        }
                    }
                    let open: Vec<usize> = (0..n).filter(|i| ends & (1 << i) == 0).collect();
                    assert_eq!(readable(&a), open, "{case}: every input that did not end is read again");
                }
            }
        }
    }

    #[test]
    fn an_input_ending_mid_alignment_completes_it_over_the_others() {
        let mut a = Alignment::new(3);
        assert_eq!(a.on_barrier(0, 7), Decision::Continue);
        assert_eq!(a.on_barrier(2, 7), Decision::Continue);
        assert_eq!(readable(&a), [1]);
        assert_eq!(a.on_end(1), Decision::Aligned(7));
        assert_eq!(readable(&a), [0, 2]);
        // The next checkpoint aligns over the two left.
        assert_eq!(a.on_barrier(2, 8), Decision::Continue);
        assert_eq!(a.on_barrier(0, 8), Decision::Aligned(8));
    }

    #[test]
    fn an_input_ending_mid_alignment_is_not_enough_while_another_is_missing() {
        let mut a = Alignment::new(3);
        assert_eq!(a.on_barrier(0, 1), Decision::Continue);
        assert_eq!(a.on_end(1), Decision::Continue);
        assert_eq!(readable(&a), [2]);
        assert_eq!(a.on_barrier(2, 1), Decision::Aligned(1));
    }

    #[test]
    fn an_input_that_ended_before_the_barrier_is_not_waited_for() {
        let mut a = Alignment::new(2);
        assert_eq!(a.on_end(1), Decision::Continue);
        assert_eq!(a.on_barrier(0, 1), Decision::Aligned(1));
        assert_eq!(a.on_barrier(0, 2), Decision::Aligned(2));
        assert_eq!(a.on_end(0), Decision::End);
    }

    /// All inputs but a held one end: the checkpoint aligns before the inputs end,
    /// and the released input is read to its end.
    #[test]
    fn the_others_ending_aligns_then_the_held_input_is_read_to_its_end() {
        let mut a = Alignment::new(3);
        assert_eq!(a.on_barrier(1, 4), Decision::Continue);
        assert_eq!(a.on_end(0), Decision::Continue);
        assert_eq!(a.on_end(2), Decision::Aligned(4));
        assert!(!a.is_finished());
        assert_eq!(readable(&a), [1]);
        assert_eq!(a.on_end(1), Decision::End);
        assert!(a.is_finished());
    }

    /// Input 1 skipped checkpoint 3 (its source saw 4 requested already): checkpoint 3
    /// cannot complete, so input 0, held for it, is released, and a barrier 3 still
    /// on its way (input 2's) is dropped.
    #[test]
    fn a_newer_barrier_supersedes_the_pending_checkpoint() {
        let mut a = Alignment::new(3);
        assert_eq!(a.on_barrier(0, 3), Decision::Continue);
        assert_eq!(blocked(&a), [0]);
        assert_eq!(a.on_barrier(1, 4), Decision::Continue);
        assert_eq!(a.pending(), Some(4));
        assert_eq!(blocked(&a), [1], "input 0's records after barrier 3 belong to checkpoint 4");
        assert_eq!(a.on_barrier(2, 3), Decision::Continue);
        assert_eq!(blocked(&a), [1], "a stale barrier holds nothing back");
        assert_eq!(a.on_barrier(0, 4), Decision::Continue);
        assert_eq!(a.on_barrier(2, 4), Decision::Aligned(4));
        assert_eq!(readable(&a), [0, 1, 2]);
    }

    #[test]
    fn a_newer_barrier_arriving_before_an_older_one_makes_it_stale() {
        let mut a = Alignment::new(2);
        assert_eq!(a.on_barrier(0, 5), Decision::Continue);
        assert_eq!(a.on_barrier(1, 4), Decision::Continue);
        assert_eq!(blocked(&a), [0]);
        assert_eq!(a.pending(), Some(5));
        assert_eq!(a.on_barrier(1, 5), Decision::Aligned(5));
    }

    /// The documented assumption: FIFO channels never deliver a barrier older than an
    /// aligned checkpoint, so alignment keeps no memory of aligned checkpoints and
    /// would align such a barrier again.
    #[test]
    fn aligned_checkpoints_are_not_remembered() {
        let mut a = Alignment::new(2);
        assert_eq!(a.on_barrier(0, 2), Decision::Continue);
        assert_eq!(a.on_barrier(1, 2), Decision::Aligned(2));
        assert_eq!(a.on_barrier(0, 1), Decision::Continue);
        assert_eq!(a.pending(), Some(1));
    }
}
