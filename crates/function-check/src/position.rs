//! Byte offsets to 1-based line and column numbers, as editors show them.

/// Line starts of one text. Lines end at `\n`, `\r\n` or a lone `\r`, as in
/// Python; a leading byte order mark takes no column.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let first = if text.starts_with('\u{feff}') { 3 } else { 0 };
        let mut starts = vec![first];
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\n' => starts.push(i + 1),
                b'\r' => {
                    if bytes.get(i + 1) == Some(&b'\n') {
                        i += 1;
                    }
                    starts.push(i + 1);
                }
                _ => {}
            }
            i += 1;
        }
        Self { text, starts }
    }

    /// The (line, column) of a byte offset; offsets past the end map to the
    /// end, offsets inside a character to that character.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset);
        if line == 0 {
            // Inside the byte order mark.
            return (1, 1);
        }
        let column = self.text[self.starts[line - 1]..offset].chars().count() + 1;
        (line, column)
    }
}

#[cfg(test)]
mod tests {
    use super::LineIndex;

    #[test]
    fn positions() {
        let cases: &[(&str, usize, (usize, usize))] = &[
            ("abc", 0, (1, 1)),
            ("abc", 2, (1, 3)),
            ("abc", 3, (1, 4)),
            ("abc", 99, (1, 4)),
            ("a\nb", 2, (2, 1)),
            ("a\r\nb", 3, (2, 1)),
            ("a\r\nb", 1, (1, 2)),
            ("a\rb", 2, (2, 1)),
            ("é\nxé y", 6, (2, 3)),
            ("é\nxé y", 7, (2, 4)),
            // Inside a multi-byte character: its start.
            ("xé", 2, (1, 2)),
            ("\u{feff}ab", 0, (1, 1)),
            ("\u{feff}ab", 4, (1, 2)),
            ("\u{feff}a\nb", 5, (2, 1)),
        ];
        for &(text, offset, want) in cases {
            assert_eq!(
                LineIndex::new(text).position(offset),
                want,
                "{text:?} @ {offset}"
            );
        }
    }
}
