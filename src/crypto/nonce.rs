//! Public random values: IVs, salts, request and trace IDs, drawn from the system
//! source a block at a time.
//!
//! These values are published with what they protect or name (an IV and a salt sit
//! in every ciphertext; a request ID in every answer): what they need is to be
//! unpredictable and never to repeat, not to stay secret. Each call used to ask the
//! kernel for them up to three times, and a `getrandom` system call costs about as
//! much as the AES-GCM seal it serves (kmsd-bench section 4g). [`fill`] hands out
//! bytes from a [`BLOCK_LEN`]-byte block of the same system source (ring's
//! `SystemRandom`), kept per thread: each byte is handed out once and wiped as it
//! goes, and the block is drawn again when it runs out.
//!
//! Secrets (keys, data keys, key pairs' scalars, page-token nonces) never come from
//! here: they are drawn from [`super::rng`] when they are made.

use std::cell::RefCell;

use super::CryptoError;
use super::rng;

/// Bytes drawn from the system source at a time: about fifteen calls' IVs, salts and
/// IDs.
pub const BLOCK_LEN: usize = 1024;

/// The rest of this thread's block: `bytes[used..]` not handed out yet.
struct Block {
    bytes: [u8; BLOCK_LEN],
    used: usize,
}

thread_local! {
    static BLOCK: RefCell<Block> = const {
        RefCell::new(Block {
            bytes: [0; BLOCK_LEN],
            used: BLOCK_LEN,
        })
    };
}

/// Fills `dst` with random bytes for a public value (module docs). A request larger
/// than a quarter block is drawn from the system source directly.
///
/// # Errors
/// [`CryptoError::Random`] if the system random source fails.
pub fn fill(dst: &mut [u8]) -> Result<(), CryptoError> {
    if dst.len() > BLOCK_LEN / 4 {
        return rng::fill_random(dst);
    }
    BLOCK.with_borrow_mut(|block| {
        if BLOCK_LEN - block.used < dst.len() {
            rng::fill_random(&mut block.bytes)?;
            block.used = 0;
        }
        let taken = &mut block.bytes[block.used..block.used + dst.len()];
        dst.copy_from_slice(taken);
        taken.fill(0);
        block.used += dst.len();
        Ok(())
    })
}

/// An array of `N` random bytes for a public value; see [`fill`].
///
/// # Errors
/// [`CryptoError::Random`] if the system random source fails.
pub fn array<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0; N];
    fill(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn values_never_repeat_across_many_blocks() {
        let mut seen = HashSet::new();
        for _ in 0..(BLOCK_LEN * 20 / 28) {
            assert!(
                seen.insert(array::<28>().unwrap()),
                "a 28-byte value repeated"
            );
        }
    }

    #[test]
    fn handed_out_bytes_are_wiped_and_the_rest_kept() {
        let first: [u8; 12] = array().unwrap();
        BLOCK.with_borrow(|block| {
            assert!(block.used >= 12);
            assert!(
                block.bytes[block.used - 12..block.used]
                    .iter()
                    .all(|&b| b == 0)
            );
            assert!(block.bytes[block.used..].iter().any(|&b| b != 0));
        });
        assert_ne!(first, [0; 12]);
    }

    #[test]
    fn threads_draw_different_values() {
        let mine: [u8; 16] = array().unwrap();
        let theirs = std::thread::spawn(|| array::<16>().unwrap())
            .join()
            .unwrap();
        assert_ne!(mine, theirs);
    }

    #[test]
    fn a_large_request_is_drawn_whole_from_the_system() {
        let mut big = [0u8; BLOCK_LEN];
        fill(&mut big).unwrap();
        assert!(big.iter().filter(|&&b| b == 0).count() < BLOCK_LEN / 16);
    }

    /// Roughly uniform: each bit set in about half of many draws (fails for a stuck
    /// byte or an all-zero block handed out).
    #[test]
    fn bits_are_balanced() {
        let mut ones = [0u32; 8];
        let draws = 4096;
        for _ in 0..draws {
            let [b] = array::<1>().unwrap();
            for (bit, count) in ones.iter_mut().enumerate() {
                *count += u32::from(b >> bit & 1);
            }
        }
        for count in ones {
            assert!(
                (draws * 4 / 10..draws * 6 / 10).contains(&count),
                "{ones:?}"
            );
        }
    }
}
