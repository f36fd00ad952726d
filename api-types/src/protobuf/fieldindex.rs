//! A message's fields by JSON name in one probe: a perfect hash per message, found at compile time (the descriptor
//! tables are `static`s built by [`Message::new`](super::Message::new), a `const fn`), so the encoder finds the field of
//! each key of a JSON object without searching the message's field list or calling `memcmp`.
//!
//! A name is read as its length and two words ([`NameKey`]): its first and last 8 bytes, which are all of it up to 16
//! bytes. The slot is that key multiplied by the message's seed, top 8 bits: one of 256. The seed is the first of a
//! fixed sequence under which no two of the message's names share a slot; a slot holds the field's position, and a
//! lookup compares the key stored with the field (and, for names over 16 bytes, their middle bytes).

use super::{Field, Kind};

/// Slots per message: a power of two, about six times the largest message's field count (`JSONSchemaProps`, 44), so a
/// seed is found in a few tries (at most 18 for these tables; with 128 slots the search took thousands).
const SLOTS: usize = 256;
const EMPTY: u8 = u8::MAX;
/// Seeds tried before giving up (the const evaluation then fails at the message's `static`).
const MAX_SEEDS: u64 = 1 << 10;

/// The position in a message's `fields` of the field whose JSON name hashes to each slot under `seed`.
#[derive(Debug)]
pub(crate) struct FieldIndex {
    seed: u64,
    slots: [u8; SLOTS],
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
        assert!(fields.len() < EMPTY as usize, "too many fields for a FieldIndex");
        let mut attempt = 0;
        while attempt < MAX_SEEDS {
            let seed = seed(attempt);
            if let Some(slots) = place(fields, seed) {
                return FieldIndex { seed, slots };
            }
            attempt += 1;
        }
        // A compile error at the message's `static`.
        panic!("no perfect hash for this message's field names: raise SLOTS or MAX_SEEDS")
    }

    /// The non-inline field of `fields` (the slice this index was built from) named `name`.
    #[cfg(test)]
    pub(crate) fn find(&self, fields: &'static [Field], name: &str) -> Option<&'static Field> {
        self.find_after(fields, name, usize::MAX).map(|(_, f)| f)
    }

    /// The position and field of `fields` named `name`, trying first the field at `next` (the one after the field
    /// of the previous key: an object's keys mostly come in the message's order, as Go writes them), which spares
    /// the hash and the slot's load.
    #[inline]
    pub(crate) fn find_after(
        &self,
        fields: &'static [Field],
        name: &str,
        next: usize,
    ) -> Option<(usize, &'static Field)> {
        let key = NameKey::of(name);
        let named = |f: &Field| f.key == key && same_middle(f.json.as_bytes(), name.as_bytes());
        if let Some(field) = fields.get(next).filter(|f| named(f) && !matches!(f.kind, Kind::Inline(_))) {
            return Some((next, field));
        }
        let at = usize::from(self.slots[key.slot(self.seed)]);
        fields.get(at).filter(|f| named(f)).map(|f| (at, f))
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
    use super::{NameKey, same_middle};
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
                // Whatever field is tried first (right, wrong, inline, past the end), the same answer.
                for next in 0..=m.fields.len() {
                    let found = m.index.find_after(m.fields, name, next);
                    assert_eq!(found.map(|(_, f)| f.tag), linear.map(|f| f.tag), "{} {name:?} from {next}", m.name);
                    assert!(found.is_none_or(|(at, f)| std::ptr::eq(&m.fields[at], f)));
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
