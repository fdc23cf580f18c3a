//! A streaming reader of PostgreSQL's binary COPY format (`COPY … (FORMAT binary)`), as
//! the backup stores table data: it counts rows, and for the few tables a check needs
//! (the audit trail) hands each row's fields to the caller. Input arrives in pieces of
//! any size; memory is one row when rows are captured, a few bytes otherwise.
//!
//! Format: the 11-byte signature `PGCOPY\n\xff\r\n\0`, a 32-bit flags field, a 32-bit
//! header-extension length and that many bytes; then tuples, each a 16-bit field count
//! followed by the fields (a 32-bit length, -1 for NULL, then the bytes); a field count of
//! -1 ends the data. All integers are big-endian.

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// The largest field kept when rows are captured (audit rows are small; anything larger
/// means the data is not what the check expects).
const MAX_CAPTURED_FIELD: usize = 16 * 1024 * 1024;

/// One row's fields (None for NULL), as handed to the caller.
pub type Row = Vec<Option<Vec<u8>>>;

enum State {
    /// Collecting the 19 fixed header bytes.
    Header,
    /// Skipping the header extension.
    Extension(u64),
    /// Collecting a tuple's 2-byte field count.
    TupleStart,
    /// Collecting a field's 4-byte length.
    FieldLen,
    /// Inside a field's bytes.
    FieldData(u64),
    /// After the trailer.
    Done,
}

pub struct CopyParser {
    state: State,
    /// Bytes of the fixed-size item being collected.
    small: Vec<u8>,
    capture: bool,
    fields_left: u16,
    row: Row,
    field: Vec<u8>,
    rows: u64,
}

impl CopyParser {
    /// `capture`: hand every row's fields to the callback of [`CopyParser::feed`].
    pub fn new(capture: bool) -> CopyParser {
        CopyParser {
            state: State::Header,
            small: Vec::with_capacity(19),
            capture,
            fields_left: 0,
            row: Vec::new(),
            field: Vec::new(),
            rows: 0,
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// True once the trailer has been read.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Takes the next piece of the data; `on_row` gets each complete row when capturing.
    pub fn feed<F>(&mut self, mut data: &[u8], on_row: &mut F) -> Result<(), String>
    where
        F: FnMut(Row) -> Result<(), String>,
    {
        while !data.is_empty() {
            match self.state {
                State::Done => return Err("data after the end of the table".into()),
                State::Header => {
                    if !self.collect(&mut data, 19) {
                        continue;
                    }
                    if &self.small[..11] != SIGNATURE {
                        return Err("not binary COPY data".into());
                    }
                    let ext = u32::from_be_bytes([
                        self.small[15],
                        self.small[16],
                        self.small[17],
                        self.small[18],
                    ]);
                    self.small.clear();
                    self.state = State::Extension(u64::from(ext));
                }
                State::Extension(n) => {
                    let take = n.min(data.len() as u64) as usize;
                    data = &data[take..];
                    let left = n - take as u64;
                    self.state = if left == 0 {
                        State::TupleStart
                    } else {
                        State::Extension(left)
                    };
                }
                State::TupleStart => {
                    if !self.collect(&mut data, 2) {
                        continue;
                    }
                    let count = i16::from_be_bytes([self.small[0], self.small[1]]);
                    self.small.clear();
                    if count == -1 {
                        self.state = State::Done;
                    } else if count < 0 {
                        return Err("a negative field count".into());
                    } else if count == 0 {
                        self.end_row(on_row)?;
                    } else {
                        self.fields_left = count as u16;
                        self.state = State::FieldLen;
                    }
                }
                State::FieldLen => {
                    if !self.collect(&mut data, 4) {
                        continue;
                    }
                    let len = i32::from_be_bytes([
                        self.small[0],
                        self.small[1],
                        self.small[2],
                        self.small[3],
                    ]);
                    self.small.clear();
                    if len == -1 {
                        if self.capture {
                            self.row.push(None);
                        }
                        self.end_field(on_row)?;
                    } else if len < 0 {
                        return Err("a negative field length".into());
                    } else if len == 0 {
                        if self.capture {
                            self.row.push(Some(Vec::new()));
                        }
                        self.end_field(on_row)?;
                    } else {
                        if self.capture && len as usize > MAX_CAPTURED_FIELD {
                            return Err("a field too large for the check".into());
                        }
                        self.state = State::FieldData(len as u64);
                    }
                }
                State::FieldData(n) => {
                    let take = n.min(data.len() as u64) as usize;
                    if self.capture {
                        self.field.extend_from_slice(&data[..take]);
                    }
                    data = &data[take..];
                    let left = n - take as u64;
                    if left == 0 {
                        if self.capture {
                            let f = std::mem::take(&mut self.field);
                            self.row.push(Some(f));
                        }
                        self.end_field(on_row)?;
                    } else {
                        self.state = State::FieldData(left);
                    }
                }
            }
        }
        Ok(())
    }

    /// Moves bytes into `small` until it holds `n`; true when it does.
    fn collect(&mut self, data: &mut &[u8], n: usize) -> bool {
        let take = (n - self.small.len()).min(data.len());
        self.small.extend_from_slice(&data[..take]);
        *data = &data[take..];
        self.small.len() == n
    }

    fn end_field<F>(&mut self, on_row: &mut F) -> Result<(), String>
    where
        F: FnMut(Row) -> Result<(), String>,
    {
        self.fields_left -= 1;
        if self.fields_left == 0 {
            self.end_row(on_row)
        } else {
            self.state = State::FieldLen;
            Ok(())
        }
    }

    fn end_row<F>(&mut self, on_row: &mut F) -> Result<(), String>
    where
        F: FnMut(Row) -> Result<(), String>,
    {
        self.rows += 1;
        self.state = State::TupleStart;
        if self.capture {
            on_row(std::mem::take(&mut self.row))?;
        }
        Ok(())
    }

    /// Confirms the data ended with its trailer.
    pub fn finish(&self) -> Result<(), String> {
        if self.is_done() {
            Ok(())
        } else {
            Err("the table data is cut short".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(SIGNATURE);
        d.extend_from_slice(&0u32.to_be_bytes());
        d.extend_from_slice(&3u32.to_be_bytes());
        d.extend_from_slice(b"xyz");
        // row 1: "ab", NULL
        d.extend_from_slice(&2i16.to_be_bytes());
        d.extend_from_slice(&2i32.to_be_bytes());
        d.extend_from_slice(b"ab");
        d.extend_from_slice(&(-1i32).to_be_bytes());
        // row 2: "", "c"
        d.extend_from_slice(&2i16.to_be_bytes());
        d.extend_from_slice(&0i32.to_be_bytes());
        d.extend_from_slice(&1i32.to_be_bytes());
        d.extend_from_slice(b"c");
        d.extend_from_slice(&(-1i16).to_be_bytes());
        d
    }

    #[test]
    fn rows_are_read_whatever_the_piece_sizes() {
        let data = sample();
        for piece in 1..data.len() {
            let mut p = CopyParser::new(true);
            let mut rows = Vec::new();
            for part in data.chunks(piece) {
                p.feed(part, &mut |r| {
                    rows.push(r);
                    Ok(())
                })
                .unwrap();
            }
            p.finish().unwrap();
            assert_eq!(p.rows(), 2);
            assert_eq!(
                rows,
                vec![
                    vec![Some(b"ab".to_vec()), None],
                    vec![Some(Vec::new()), Some(b"c".to_vec())]
                ]
            );
        }
    }

    #[test]
    fn cut_or_foreign_data_is_refused() {
        let data = sample();
        let mut p = CopyParser::new(false);
        p.feed(&data[..data.len() - 1], &mut |_| Ok(())).unwrap();
        assert!(p.finish().is_err());
        let mut p = CopyParser::new(false);
        assert!(p
            .feed(b"id,name\n1,x\n0123456789", &mut |_| Ok(()))
            .is_err());
        let mut p = CopyParser::new(false);
        let mut more = data.clone();
        more.push(0);
        assert!(p.feed(&more, &mut |_| Ok(())).is_err());
    }
}
