//! Words of the text files under /proc and /sys/fs/cgroup, split without allocating.
//! Shared by the `cgroup` and `smaps` parsers.

/// Splits `line` at ASCII whitespace into exactly `words.len()` non-empty words; false
/// when it has more or fewer. One pass over the bytes.
pub(crate) fn split_words<'a>(line: &'a [u8], words: &mut [&'a [u8]]) -> bool {
    let mut count = 0;
    let mut at = 0;
    while at < line.len() {
        if line[at].is_ascii_whitespace() {
            at += 1;
            continue;
        }
        let start = at;
        while at < line.len() && !line[at].is_ascii_whitespace() {
            at += 1;
        }
        if count == words.len() {
            return false;
        }
        words[count] = &line[start..at];
        count += 1;
    }
    count == words.len()
}
