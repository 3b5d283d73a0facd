//! The glob of key grants: `*` matches any run of characters (also none), every other
//! character matches itself. No escapes, no `?` or classes: key IDs and aliases are
//! plain ASCII names, and a smaller language is easier to audit.

/// Whether `pattern` matches all of `text`. Linear in `pattern.len() * text.len()` at
/// worst (the usual greedy algorithm with one backtrack point), never recursive.
pub fn matches(pattern: &str, text: &str) -> bool {
    let pattern = pattern.as_bytes();
    let text = text.as_bytes();
    let (mut p, mut t) = (0usize, 0usize);
    // The last `*` seen, and the text position it is currently matched up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn literal_and_star_patterns() {
        let cases = [
            ("*", "", true),
            ("*", "key-abc", true),
            ("key-abc", "key-abc", true),
            ("key-abc", "key-abcd", false),
            ("key-abcd", "key-abc", false),
            ("alias/payments-*", "alias/payments-eu", true),
            ("alias/payments-*", "alias/payments-", true),
            ("alias/payments-*", "alias/payment", false),
            ("alias/payments-*", "alias/other", false),
            ("*-prod", "alias/a-prod", true),
            ("*-prod", "alias/a-prod-2", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXcYYb", false),
            ("a**", "a", true),
            ("", "", true),
            ("", "x", false),
            ("?", "x", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(matches(pattern, text), expected, "{pattern:?} vs {text:?}");
        }
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let text = "a".repeat(10_000);
        let pattern = format!("{}b", "*a".repeat(50));
        let started = std::time::Instant::now();
        assert!(!matches(&pattern, &text));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
