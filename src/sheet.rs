//! Tables people take into a spreadsheet: CSV and Excel (`.xlsx`) from one [`Sheet`].
//!
//! Guarantees: the CSV is UTF-8 with a byte-order mark (Excel on a Chinese Windows reads
//! a CSV without one in the local code page and garbles every Chinese character) and its
//! cells cannot run as formulas: a text cell beginning with `=`, `+`, `-`, `@`, a tab or a
//! carriage return is prefixed with `'`. The `.xlsx` is minimal SpreadsheetML (one
//! worksheet; text as inline strings, which a spreadsheet never evaluates, so no prefix is
//! needed there; a bold header row). Characters XML 1.0 cannot carry (controls other than
//! tab and line breaks) are dropped from both. Nothing here logs a cell.

use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::error::{AppError, AppResult};

/// The media type of an `.xlsx` workbook.
pub const XLSX_MEDIA_TYPE: &str =
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
/// The media type of the CSV.
pub const CSV_MEDIA_TYPE: &str = "text/csv; charset=utf-8";
/// The UTF-8 byte-order mark.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Number(f64),
    Empty,
}

impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::Text(s)
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::Text(s.to_string())
    }
}

impl From<Option<String>> for Cell {
    fn from(s: Option<String>) -> Self {
        s.map_or(Cell::Empty, Cell::Text)
    }
}

impl From<i64> for Cell {
    fn from(n: i64) -> Self {
        Cell::Number(n as f64)
    }
}

/// A table: a header row and rows of cells.
#[derive(Debug, Clone, Default)]
pub struct Sheet {
    /// The worksheet's name in the workbook (at most 31 characters; shortened if longer).
    pub name: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// Whether a spreadsheet would read the text as a formula (or a command, in old ones).
fn formula_like(s: &str) -> bool {
    s.starts_with(['=', '+', '-', '@', '\t', '\r'])
}

/// The characters XML 1.0 allows (tab, line breaks and everything from U+0020 except the
/// surrogates, which a `char` never is, and U+FFFE/U+FFFF).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

fn clean(s: &str) -> String {
    s.chars().filter(|&c| xml_char(c)).collect()
}

/// One CSV field: guarded against formulas, quoted when it must be.
pub fn csv_field(v: &str) -> String {
    let v = clean(v);
    let v = if formula_like(&v) { format!("'{v}") } else { v };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

fn number_text(n: f64) -> String {
    if n.is_finite() {
        format!("{n}")
    } else {
        String::new()
    }
}

fn xml_escape(s: &str, out: &mut String) {
    for c in s.chars().filter(|&c| xml_char(c)) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            // A bare CR would be read back as a line feed.
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

/// The column's letters (0 → A, 25 → Z, 26 → AA).
fn column(mut i: usize) -> String {
    let mut letters = Vec::new();
    loop {
        letters.push(b'A' + (i % 26) as u8);
        if i < 26 {
            break;
        }
        i = i / 26 - 1;
    }
    letters.reverse();
    String::from_utf8_lossy(&letters).into_owned()
}

/// How wide a text shows, in the width of a digit (a CJK character takes two).
fn display_width(s: &str) -> usize {
    s.lines()
        .map(|l| {
            l.chars()
                .map(|c| {
                    if crate::requests::purpose::is_cjk(c) {
                        2
                    } else {
                        1
                    }
                })
                .sum::<usize>()
        })
        .max()
        .unwrap_or(0)
}

impl Sheet {
    pub fn new(name: impl Into<String>, headers: Vec<String>) -> Sheet {
        Sheet {
            name: name.into(),
            headers,
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<Cell>) {
        self.rows.push(row);
    }

    /// The table as CSV: UTF-8 with a byte-order mark, CRLF line ends (RFC 4180).
    pub fn to_csv(&self) -> Vec<u8> {
        let mut out = String::new();
        let line = |cells: Vec<String>, out: &mut String| {
            out.push_str(&cells.join(","));
            out.push_str("\r\n");
        };
        line(
            self.headers.iter().map(|h| csv_field(h)).collect(),
            &mut out,
        );
        for row in &self.rows {
            line(
                row.iter()
                    .map(|c| match c {
                        Cell::Text(s) => csv_field(s),
                        Cell::Number(n) => number_text(*n),
                        Cell::Empty => String::new(),
                    })
                    .collect(),
                &mut out,
            );
        }
        let mut bytes = Vec::with_capacity(BOM.len() + out.len());
        bytes.extend_from_slice(BOM);
        bytes.extend_from_slice(out.as_bytes());
        bytes
    }

    fn sheet_name(&self) -> String {
        // Excel refuses these in a sheet name, and names over 31 characters.
        let name: String = clean(&self.name)
            .chars()
            .filter(|c| !matches!(c, '\\' | '/' | '?' | '*' | '[' | ']' | ':'))
            .take(31)
            .collect();
        if name.trim().is_empty() {
            "Sheet1".to_string()
        } else {
            name
        }
    }

    fn worksheet_xml(&self) -> String {
        let mut x = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n\
             <worksheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\">",
        );
        // The header row stays in view while scrolling.
        x.push_str(
            "<sheetViews><sheetView workbookViewId=\"0\"><pane ySplit=\"1\" topLeftCell=\"A2\" \
             activePane=\"bottomLeft\" state=\"frozen\"/></sheetView></sheetViews>",
        );
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.headers.len()])
            .max()
            .unwrap_or(0);
        if columns > 0 {
            x.push_str("<cols>");
            for i in 0..columns {
                let widest = self
                    .rows
                    .iter()
                    .filter_map(|r| match r.get(i) {
                        Some(Cell::Text(s)) => Some(display_width(s)),
                        Some(Cell::Number(n)) => Some(number_text(*n).len()),
                        _ => None,
                    })
                    .chain(self.headers.get(i).map(|h| display_width(h)))
                    .max()
                    .unwrap_or(8);
                let width = (widest + 2).clamp(8, 60);
                x.push_str(&format!(
                    "<col min=\"{n}\" max=\"{n}\" width=\"{width}\" customWidth=\"1\"/>",
                    n = i + 1
                ));
            }
            x.push_str("</cols>");
        }
        x.push_str("<sheetData>");
        let header: Vec<Cell> = self
            .headers
            .iter()
            .map(|h| Cell::from(h.as_str()))
            .collect();
        for (r, row) in std::iter::once(&header).chain(&self.rows).enumerate() {
            let n = r + 1;
            x.push_str(&format!("<row r=\"{n}\">"));
            let style = if r == 0 { " s=\"1\"" } else { "" };
            for (i, cell) in row.iter().enumerate() {
                let at = format!("{}{n}", column(i));
                match cell {
                    Cell::Text(s) => {
                        x.push_str(&format!(
                            "<c r=\"{at}\" t=\"inlineStr\"{style}><is><t xml:space=\"preserve\">"
                        ));
                        xml_escape(s, &mut x);
                        x.push_str("</t></is></c>");
                    }
                    Cell::Number(v) if v.is_finite() => {
                        x.push_str(&format!(
                            "<c r=\"{at}\"{style}><v>{}</v></c>",
                            number_text(*v)
                        ));
                    }
                    Cell::Number(_) | Cell::Empty => {}
                }
            }
            x.push_str("</row>");
        }
        x.push_str("</sheetData></worksheet>");
        x
    }

    /// The table as an Excel workbook of one worksheet.
    pub fn to_xlsx(&self) -> AppResult<Vec<u8>> {
        workbook_xlsx(std::slice::from_ref(self))
    }
}

/// Several tables as one Excel workbook, one worksheet each, in order. Worksheet names are
/// made unique (Excel refuses a workbook with two sheets of one name).
pub fn workbook_xlsx(sheets: &[Sheet]) -> AppResult<Vec<u8>> {
    let mut names: Vec<String> = Vec::with_capacity(sheets.len());
    for (i, sheet) in sheets.iter().enumerate() {
        let mut name = sheet.sheet_name();
        if names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            let suffix = format!(" {}", i + 1);
            name = name
                .chars()
                .take(31 - suffix.chars().count())
                .chain(suffix.chars())
                .collect();
        }
        names.push(name);
    }
    let mut overrides = String::new();
    let mut entries = String::new();
    let mut rels = String::new();
    for (i, name) in names.iter().enumerate() {
        let n = i + 1;
        let mut escaped = String::new();
        xml_escape(name, &mut escaped);
        overrides.push_str(&format!(
            "<Override PartName=\"/xl/worksheets/sheet{n}.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml\"/>"
        ));
        entries.push_str(&format!(
            "<sheet name=\"{escaped}\" sheetId=\"{n}\" r:id=\"rId{n}\"/>"
        ));
        rels.push_str(&format!(
            "<Relationship Id=\"rId{n}\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet\" Target=\"worksheets/sheet{n}.xml\"/>"
        ));
    }
    let styles_id = names.len() + 1;
    let mut parts: Vec<(String, String)> = vec![
        (
            "[Content_Types].xml".to_string(),
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n\
                 <Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">\
                 <Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>\
                 <Default Extension=\"xml\" ContentType=\"application/xml\"/>\
                 <Override PartName=\"/xl/workbook.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml\"/>\
                 {overrides}\
                 <Override PartName=\"/xl/styles.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml\"/>\
                 </Types>"
            ),
        ),
        (
            "_rels/.rels".to_string(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n\
             <Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">\
             <Relationship Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument\" Target=\"xl/workbook.xml\"/>\
             </Relationships>"
                .to_string(),
        ),
        (
            "xl/workbook.xml".to_string(),
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n\
                 <workbook xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\" \
                 xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships\">\
                 <sheets>{entries}</sheets></workbook>"
            ),
        ),
        (
            "xl/_rels/workbook.xml.rels".to_string(),
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n\
                 <Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">\
                 {rels}\
                 <Relationship Id=\"rId{styles_id}\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles\" Target=\"styles.xml\"/>\
                 </Relationships>"
            ),
        ),
        ("xl/styles.xml".to_string(), STYLES.to_string()),
    ];
    for (i, sheet) in sheets.iter().enumerate() {
        parts.push((
            format!("xl/worksheets/sheet{}.xml", i + 1),
            sheet.worksheet_xml(),
        ));
    }
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    let fail = |e: &dyn std::fmt::Display| AppError::internal(format!("writing the xlsx: {e}"));
    for (path, content) in parts {
        zip.start_file(path, options).map_err(|e| fail(&e))?;
        zip.write_all(content.as_bytes()).map_err(|e| fail(&e))?;
    }
    Ok(zip.finish().map_err(|e| fail(&e))?.into_inner())
}

/// The workbook's styles: a plain font and a bold one (style 1, the header row).
const STYLES: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n\
     <styleSheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\">\
     <fonts count=\"2\"><font><sz val=\"11\"/><name val=\"Calibri\"/></font>\
     <font><b/><sz val=\"11\"/><name val=\"Calibri\"/></font></fonts>\
     <fills count=\"2\"><fill><patternFill patternType=\"none\"/></fill><fill><patternFill patternType=\"gray125\"/></fill></fills>\
     <borders count=\"1\"><border><left/><right/><top/><bottom/><diagonal/></border></borders>\
     <cellStyleXfs count=\"1\"><xf numFmtId=\"0\" fontId=\"0\" fillId=\"0\" borderId=\"0\"/></cellStyleXfs>\
     <cellXfs count=\"2\"><xf numFmtId=\"0\" fontId=\"0\" fillId=\"0\" borderId=\"0\" xfId=\"0\"/>\
     <xf numFmtId=\"0\" fontId=\"1\" fillId=\"0\" borderId=\"0\" xfId=\"0\" applyFont=\"1\"/></cellXfs>\
     <cellStyles count=\"1\"><cellStyle name=\"Normal\" xfId=\"0\" builtinId=\"0\"/></cellStyles>\
     </styleSheet>";

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Read;

    /// The cells of the first worksheet of an `.xlsx`, read back (inline strings and
    /// numbers), row by row.
    pub(crate) fn read_xlsx(bytes: &[u8]) -> Vec<Vec<String>> {
        read_xlsx_sheet(bytes, 1)
    }

    /// The cells of worksheet `n` (from 1) of an `.xlsx`, read back row by row.
    pub(crate) fn read_xlsx_sheet(bytes: &[u8], n: usize) -> Vec<Vec<String>> {
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes.to_vec())).expect("a zip");
        for part in [
            "[Content_Types].xml",
            "_rels/.rels",
            "xl/workbook.xml",
            "xl/_rels/workbook.xml.rels",
            "xl/styles.xml",
        ] {
            assert!(zip.by_name(part).is_ok(), "{part} is missing");
        }
        let mut xml = String::new();
        zip.by_name(&format!("xl/worksheets/sheet{n}.xml"))
            .expect("the worksheet")
            .read_to_string(&mut xml)
            .expect("utf-8");
        let unescape = |s: &str| {
            s.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#13;", "\r")
                .replace("&amp;", "&")
        };
        xml.split("<row ")
            .skip(1)
            .map(|row| {
                row.split("<c ")
                    .skip(1)
                    .map(|c| {
                        if let Some(t) = c.split_once("<t xml:space=\"preserve\">") {
                            unescape(t.1.split("</t>").next().unwrap_or(""))
                        } else if let Some(v) = c.split_once("<v>") {
                            v.1.split("</v>").next().unwrap_or("").to_string()
                        } else {
                            String::new()
                        }
                    })
                    .collect()
            })
            .collect()
    }

    fn sample() -> Sheet {
        let mut s = Sheet::new("借阅登记", vec!["档号".into(), "题名".into(), "n".into()]);
        s.push(vec![
            "CONTR-1".into(),
            "=HYPERLINK(\"http://x\")".into(),
            Cell::from(3),
        ]);
        s.push(vec!["a,b".into(), "引号\"<&>\n第二行".into(), Cell::Empty]);
        s
    }

    #[test]
    fn csv_has_a_bom_and_no_formulas() {
        let csv = sample().to_csv();
        assert!(csv.starts_with(BOM));
        let text = String::from_utf8(csv[3..].to_vec()).unwrap();
        assert_eq!(
            text,
            "档号,题名,n\r\nCONTR-1,\"'=HYPERLINK(\"\"http://x\"\")\",3\r\n\
             \"a,b\",\"引号\"\"<&>\n第二行\",\r\n"
        );
        for bad in ["+1", "-1", "@SUM(A1)", "\tx"] {
            assert!(csv_field(bad).starts_with('\'') || csv_field(bad).starts_with("\"'"));
        }
        assert_eq!(csv_field("plain"), "plain");
    }

    #[test]
    fn xlsx_round_trips() {
        let bytes = sample().to_xlsx().unwrap();
        let rows = read_xlsx(&bytes);
        assert_eq!(rows[0], vec!["档号", "题名", "n"]);
        assert_eq!(rows[1], vec!["CONTR-1", "=HYPERLINK(\"http://x\")", "3"]);
        assert_eq!(rows[2], vec!["a,b", "引号\"<&>\n第二行"]);
        // Text is never a formula in the workbook.
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        let mut xml = String::new();
        zip.by_name("xl/worksheets/sheet1.xml")
            .unwrap()
            .read_to_string(&mut xml)
            .unwrap();
        assert!(!xml.contains("<f>"));
    }

    #[test]
    fn columns_and_names() {
        assert_eq!(column(0), "A");
        assert_eq!(column(25), "Z");
        assert_eq!(column(26), "AA");
        assert_eq!(column(27), "AB");
        assert_eq!(column(701), "ZZ");
        assert_eq!(column(702), "AAA");
        let s = Sheet::new("a/b:c[d]*?", vec![]);
        assert_eq!(s.sheet_name(), "abcd");
        assert_eq!(Sheet::new("", vec![]).sheet_name(), "Sheet1");
        assert_eq!(csv_field("nul\u{0}here"), "nulhere");
    }

    #[test]
    fn a_workbook_holds_each_sheet_under_a_unique_name() {
        let mut a = Sheet::new("统计", vec!["kind".into(), "count".into()]);
        a.push(vec!["lookup".into(), Cell::from(3i64)]);
        let mut b = Sheet::new("统计", vec!["category".into()]);
        b.push(vec!["=cmd".into()]);
        let bytes = workbook_xlsx(&[a, b]).unwrap();
        assert_eq!(read_xlsx_sheet(&bytes, 1)[1], vec!["lookup", "3"]);
        assert_eq!(read_xlsx_sheet(&bytes, 2)[1], vec!["=cmd"]);
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        let mut wb = String::new();
        zip.by_name("xl/workbook.xml")
            .unwrap()
            .read_to_string(&mut wb)
            .unwrap();
        assert!(wb.contains("name=\"统计\" sheetId=\"1\""), "{wb}");
        assert!(wb.contains("name=\"统计 2\" sheetId=\"2\""), "{wb}");
        let mut rels = String::new();
        zip.by_name("xl/_rels/workbook.xml.rels")
            .unwrap()
            .read_to_string(&mut rels)
            .unwrap();
        assert!(
            rels.contains("Id=\"rId3\"") && rels.contains("styles.xml"),
            "{rels}"
        );
    }
}
