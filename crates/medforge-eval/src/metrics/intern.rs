//! A byte-string interner: strings to dense ids `0..` in an open-addressing table that compares
//! the first 8 bytes as a number (most tokens are no longer), reusable after [`Interner::clear`].

/// Strings to dense ids.
#[derive(Default)]
pub(crate) struct Interner {
    /// 0: empty, else entry index + 1. Length a power of two, at least twice the entries.
    slots: Vec<u32>,
    /// Per entry: hash, the first 8 bytes (zero-padded), arena offset, length.
    entries: Vec<(u64, u64, u32, u32)>,
    /// The slot of each entry (for clearing).
    used: Vec<u32>,
    arena: Vec<u8>,
}

pub(crate) const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// The first (up to) 8 bytes of `t`, zero-padded, little-endian. Short strings are read with two
/// overlapping loads (each byte lands at its own position either way), not a variable-length copy.
#[inline]
pub(crate) fn prefix8(t: &[u8]) -> u64 {
    let n = t.len();
    if n >= 8 {
        u64::from_le_bytes(t[..8].try_into().expect("8 bytes"))
    } else if n >= 4 {
        let lo = u32::from_le_bytes(t[..4].try_into().expect("4 bytes")) as u64;
        let hi = u32::from_le_bytes(t[n - 4..].try_into().expect("4 bytes")) as u64;
        lo | (hi << (8 * (n - 4)))
    } else if n > 0 {
        (t[0] as u64) | ((t[n / 2] as u64) << (8 * (n / 2))) | ((t[n - 1] as u64) << (8 * (n - 1)))
    } else {
        0
    }
}

/// A 64-bit hash of a byte string whose first 8 bytes are `prefix` (FxHash-style over 8-byte
/// words; the high bits are the best mixed).
#[inline]
fn hash_with_prefix(t: &[u8], prefix: u64) -> u64 {
    let mut h = (prefix ^ (t.len() as u64).rotate_right(8)).wrapping_mul(K);
    if t.len() > 8 {
        let mut chunks = t[8..].chunks_exact(8);
        for c in &mut chunks {
            h = (h.rotate_left(23) ^ u64::from_le_bytes(c.try_into().expect("8 bytes"))).wrapping_mul(K);
        }
        let r = chunks.remainder();
        if !r.is_empty() {
            h = (h.rotate_left(23) ^ prefix8(r)).wrapping_mul(K);
        }
    }
    h
}

impl Interner {
    pub(crate) fn clear(&mut self) {
        for &s in &self.used {
            self.slots[s as usize] = 0;
        }
        self.used.clear();
        self.entries.clear();
        self.arena.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The id of `t`, a new one (the next integer) when `t` is new.
    #[inline]
    pub(crate) fn id(&mut self, t: &[u8]) -> u32 {
        if (self.entries.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let prefix = prefix8(t);
        let h = hash_with_prefix(t, prefix);
        let mask = self.slots.len() - 1;
        let mut s = (h >> (64 - self.slots.len().trailing_zeros())) as usize;
        loop {
            let v = self.slots[s];
            if v == 0 {
                let id = self.entries.len() as u32;
                let off = self.arena.len() as u32;
                if t.len() > 8 {
                    self.arena.extend_from_slice(&t[8..]);
                }
                self.entries.push((h, prefix, off, t.len() as u32));
                self.used.push(s as u32);
                self.slots[s] = id + 1;
                return id;
            }
            let (eh, ep, eo, el) = self.entries[v as usize - 1];
            if eh == h
                && ep == prefix
                && el as usize == t.len()
                && (t.len() <= 8 || self.arena[eo as usize..eo as usize + t.len() - 8] == t[8..])
            {
                return v - 1;
            }
            s = (s + 1) & mask;
        }
    }

    /// The string with id `id`, appended to `out`.
    pub(crate) fn bytes_into(&self, id: u32, out: &mut Vec<u8>) {
        let (_, prefix, off, len) = self.entries[id as usize];
        let len = len as usize;
        out.extend_from_slice(&prefix.to_le_bytes()[..len.min(8)]);
        if len > 8 {
            out.extend_from_slice(&self.arena[off as usize..off as usize + len - 8]);
        }
    }

    fn grow(&mut self) {
        let n = (self.slots.len() * 2).max(256);
        self.slots.clear();
        self.slots.resize(n, 0);
        self.used.clear();
        let shift = 64 - n.trailing_zeros();
        for (i, e) in self.entries.iter().enumerate() {
            let mut s = (e.0 >> shift) as usize;
            while self.slots[s] != 0 {
                s = (s + 1) & (n - 1);
            }
            self.slots[s] = i as u32 + 1;
            self.used.push(s as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix8_is_the_padded_bytes() {
        let s = b"abcdefghij";
        for n in 0..=10 {
            let mut b = [0u8; 8];
            b[..n.min(8)].copy_from_slice(&s[..n.min(8)]);
            assert_eq!(prefix8(&s[..n]), u64::from_le_bytes(b), "{n}");
        }
    }

    #[test]
    fn interner_ids() {
        let mut int = Interner::default();
        let words: Vec<String> = (0..3000)
            .map(|i| match i % 4 {
                0 => format!("{i}"),
                1 => format!("a-long-shared-prefix-{i}"),
                2 => "x".repeat(i % 40),
                _ => format!("é{i}\u{0}"),
            })
            .collect();
        for round in 0..3 {
            int.clear();
            let mut first = std::collections::HashMap::new();
            for w in words.iter().chain(words.iter().rev()) {
                let id = int.id(w.as_bytes());
                let want = *first.entry(w.clone()).or_insert(id);
                assert_eq!(id, want, "{w:?} round {round}");
            }
            assert_eq!(int.len(), first.len());
            let mut ids: Vec<u32> = first.values().copied().collect();
            ids.sort_unstable();
            assert!(ids.iter().enumerate().all(|(i, &x)| i as u32 == x), "dense ids");
            for (w, &id) in &first {
                let mut b = Vec::new();
                int.bytes_into(id, &mut b);
                assert_eq!(b, w.as_bytes());
            }
        }
    }
}
