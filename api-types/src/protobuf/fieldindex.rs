//! A message's fields by JSON name in one probe: a perfect hash per message, found at compile time (the descriptor
//! tables are `static`s built by [`Message::new`](super::Message::new), a `const fn`), so the encoder finds the field of
//! each key of a JSON object without searching the message's field list or calling `memcmp`.
//!
//! A name is read as its length and two words ([`NameKey`]): its first and last 8 bytes, which are all of it up to 16
//! bytes. The slot is that key multiplied by the message's seed, top 8 bits: one of 256. The seed is the first of a
//! fixed sequence under which no two of the message's names share a slot; a slot holds the field's position, and a
//! lookup compares the key stored with the field (and, for names over 16 bytes, their middle bytes).

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

use super::{Field, Kind};

/// Slots per message: a power of two, about six times the largest message's field count (`JSONSchemaProps`, 44), so a
/// seed is found in a few tries (at most 18 for these tables; with 128 slots the search took thousands).
const SLOTS: usize = 256;
const EMPTY: u8 = u8::MAX;
/// Seeds tried before giving up (the const evaluation then fails at the message's `static`).
const MAX_SEEDS: u64 = 1 << 10;

/// Positions the successor memo covers: every field of a message (at most 62) and [`START`].
const FOLLOWS: usize = 64;
/// The position [`FieldIndex::find_following`] takes as the previous one for an object's first key.
pub(crate) const START: usize = FOLLOWS - 1;

/// The position in a message's `fields` of the field whose JSON name hashes to each slot under `seed`; and, for each
/// field, the field whose key came next the last time it was found (objects of one message mostly have the same
/// keys in the same order: the pods of a Deployment, the conditions of a status).
#[derive(Debug)]
pub(crate) struct FieldIndex {
    seed: u64,
    slots: [u8; SLOTS],
    /// By the previous key's field position (or [`START`]): the position of the field found next, last time. Shared
    /// by every thread encoding this message; a stale or racing value is only a wrong guess, checked like any other.
    follows: [AtomicU8; FOLLOWS],
}

/// A name's length and its first and last bytes, as the index hashes and compares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NameKey {
    len: usize,
    /// The first 8 bytes (little-endian); of a shorter name, its first and last 4 bytes, or its first, middle and
    /// last byte: all of its bytes, either way.
    head: u64,
    /// The last 8 bytes of a name of 8 or more bytes, else 0.
    tail: u64,
}

impl NameKey {
    #[inline]
    pub(crate) const fn of(name: &str) -> Self {
        let b = name.as_bytes();
        let len = b.len();
        let (head, tail) = match len {
            8.. => (word(b, 0), word(b, len - 8)),
            4.. => (half(b, 0) as u64 | (half(b, len - 4) as u64) << 32, 0),
            1.. => (b[0] as u64 | (b[len / 2] as u64) << 8 | (b[len - 1] as u64) << 16, 0),
            0 => (0, 0),
        };
        NameKey { len, head, tail }
    }

    #[inline]
    const fn slot(&self, seed: u64) -> usize {
        let x = self.head ^ self.tail.rotate_left(29) ^ (self.len as u64).rotate_right(8);
        (x.wrapping_mul(seed) >> (64 - SLOTS.trailing_zeros())) as usize
    }
}

impl FieldIndex {
    /// The index of `fields` (their JSON names; inline fields are found through their own message and not indexed).
    pub(crate) const fn new(fields: &[Field]) -> Self {
        assert!(fields.len() < START, "too many fields for a FieldIndex");
        let mut attempt = 0;
        while attempt < MAX_SEEDS {
            let seed = seed(attempt);
            if let Some(slots) = place(fields, seed) {
                return FieldIndex { seed, slots, follows: [const { AtomicU8::new(EMPTY) }; FOLLOWS] };
            }
            attempt += 1;
        }
        // A compile error at the message's `static`.
        panic!("no perfect hash for this message's field names: raise SLOTS or MAX_SEEDS")
    }

    /// The non-inline field of `fields` (the slice this index was built from) named `name`.
    #[cfg(test)]
    pub(crate) fn find(&self, fields: &'static [Field], name: &str) -> Option<&'static Field> {
        self.find_following(fields, name, START).map(|(_, f)| f)
    }

    /// The position and field of `fields` named `name`, the previous key of the object having been found at
    /// position `prev` ([`START`] for the first key). Tried in turn: the field that followed `prev` last time, the
    /// field after `prev` (keys mostly come in the message's order, as Go writes them), then the hash. A guess that
    /// is right spares the hash and the dependent loads of the slot and its field; under `perf`, the hash's path was
    /// the encoder's costliest, as an object's keys skip the fields it leaves out.
    #[inline]
    pub(crate) fn find_following(
        &self,
        fields: &'static [Field],
        name: &str,
        prev: usize,
    ) -> Option<(usize, &'static Field)> {
        let key = NameKey::of(name);
        let named = |f: &Field| f.key == key && same_middle(f.json.as_bytes(), name.as_bytes());
        let memo = &self.follows[prev.min(START)];
        // Only positions of non-inline fields are kept (an empty memo is past the end).
        let guess = usize::from(memo.load(Relaxed));
        if let Some(field) = fields.get(guess).filter(|f| named(f)) {
            return Some((guess, field));
        }
        let next = if prev >= START { 0 } else { prev + 1 };
        let found = match fields.get(next).filter(|f| named(f) && !matches!(f.kind, Kind::Inline(_))) {
            Some(field) => Some((next, field)),
            None => {
                let at = usize::from(self.slots[key.slot(self.seed)]);
                fields.get(at).filter(|f| named(f)).map(|f| (at, f))
            }
        };
        if let Some((at, _)) = found {
            memo.store(at as u8, Relaxed);
        }
        found
    }
}

/// Whether two names of the same length, first 8 and last 8 bytes are the same name: compared by words up to 32
/// bytes (the 8 bytes after the first 8 and the 8 before the last 8 cover the rest), then byte by byte.
#[inline]
fn same_middle(a: &[u8], b: &[u8]) -> bool {
    match a.len() {
        ..=16 => true,
        n @ ..=32 => word(a, 8) == word(b, 8) && word(a, n - 16) == word(b, n - 16),
        n => a[8..n - 8] == b[8..n - 8],
    }
}

/// The `attempt`th seed: odd multipliers spread over the 64-bit range.
const fn seed(attempt: u64) -> u64 {
    0x9e37_79b9_7f4a_7c15_u64.wrapping_add(attempt.wrapping_mul(0x6a09_e667_f3bc_c909)) | 1
}

/// Each indexed field's position in its slot, or `None` when two names share a slot under `seed`.
const fn place(fields: &[Field], seed: u64) -> Option<[u8; SLOTS]> {
    let mut slots = [EMPTY; SLOTS];
    let mut i = 0;
    while i < fields.len() {
        if !matches!(fields[i].kind, Kind::Inline(_)) {
            let s = fields[i].key.slot(seed);
            if slots[s] != EMPTY {
                return None;
            }
            slots[s] = i as u8;
        }
        i += 1;
    }
    Some(slots)
}

/// The 8 bytes of `b` from `at` (little-endian).
#[inline]
const fn word(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(*b.split_at(at).1.first_chunk::<8>().expect("8 bytes"))
}

/// The 4 bytes of `b` from `at` (little-endian).
#[inline]
const fn half(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(*b.split_at(at).1.first_chunk::<4>().expect("4 bytes"))
}

#[cfg(test)]
mod tests {
    use super::{NameKey, START, same_middle};
    use crate::protobuf::{Kind, Message};
    use crate::protobuf_schema::ROOTS;

    /// Every message reachable from the roots, once.
    fn all_messages() -> Vec<&'static Message> {
        let mut seen: Vec<&'static Message> = Vec::new();
        let mut todo: Vec<&'static Message> = ROOTS.iter().map(|(_, _, m)| *m).collect();
        while let Some(m) = todo.pop() {
            if seen.iter().any(|s| std::ptr::eq(*s, m)) {
                continue;
            }
            seen.push(m);
            for f in m.fields {
                if let Kind::Message(t) | Kind::Inline(t) | Kind::MapMessage(t) = f.kind {
                    todo.push(t);
                }
            }
        }
        seen
    }

    #[test]
    fn the_index_finds_what_a_linear_search_finds() {
        let messages = all_messages();
        assert!(messages.len() > 400, "{} messages", messages.len());
        let mut names: Vec<&str> = messages.iter().flat_map(|m| m.fields.iter().map(|f| f.json)).collect();
        // Near misses: same length and ends as real names, other middles, prefixes, suffixes, empty, long.
        names.extend(["", "a", "ab", "abc", "apiVersion", "kind", "metadataX", "xmetadata", "metaData"]);
        names.extend(["terminationMessagePath", "terminationMessageXath", "terminationGracePeriodSecondz"]);
        names.extend(["terminationGracePeriodSXconds", "x-kubernetes-preserve-unknown-fields"]);
        names.extend(["x-kubernetes-preserve-unknown-fieldz", "x-kubernetes-preserve-unknoWn-fields"]);
        for m in &messages {
            for name in &names {
                let linear = m.fields.iter().find(|f| f.json == *name && !matches!(f.kind, Kind::Inline(_)));
                let indexed = m.index.find(m.fields, name);
                assert_eq!(indexed.map(|f| f.tag), linear.map(|f| f.tag), "{} {name:?}", m.name);
                // Whatever the previous key's field (right, wrong, inline, past the end) and whatever the memo
                // holds (empty, this name, the last name looked for), the same answer.
                for prev in (0..=m.fields.len()).chain([START]) {
                    for _ in 0..2 {
                        let found = m.index.find_following(m.fields, name, prev);
                        assert_eq!(
                            found.map(|(_, f)| f.tag),
                            linear.map(|f| f.tag),
                            "{} {name:?} after {prev}",
                            m.name
                        );
                        assert!(found.is_none_or(|(at, f)| std::ptr::eq(&m.fields[at], f)));
                    }
                }
            }
        }
    }

    #[test]
    fn a_name_key_holds_every_byte_of_a_short_name() {
        let short = ["", "a", "ab", "abc", "abcd", "abcde", "abcdefg", "abcdefgh", "abcdefghijklmnop"];
        for a in short {
            for b in short {
                assert_eq!(NameKey::of(a) == NameKey::of(b), a == b, "{a:?} {b:?}");
            }
        }
        assert_ne!(NameKey::of("abc"), NameKey::of("axc"));
        assert_ne!(NameKey::of("abcdef"), NameKey::of("abXdef"));
        assert!(same_middle(b"0123456789abcdefghij", b"0123456789abcdefghij"));
        assert!(!same_middle(b"01234567X9abcdefghij", b"0123456789abcdefghij"));
        assert!(!same_middle(b"0123456789abcdefgXijklmnopqrstuvwxyz", b"0123456789abcdefghijklmnopqrstuvwxyz"));
    }
}
