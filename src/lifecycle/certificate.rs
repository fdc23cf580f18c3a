//! The certificate of destruction as a PDF: a small, text-only PDF 1.4 written here.
//!
//! Lines of ASCII text are set in Helvetica (one of the standard 14 fonts, never embedded);
//! a line with any other character is set in STSong-Light, the Adobe-GB1 CID font every
//! PDF reader with Chinese support carries, through the `UniGB-UCS2-H` CMap, as a hex
//! string of UTF-16BE code units (characters outside the Basic Multilingual Plane, which
//! UCS-2 cannot carry, are shown as `?`). Nothing is embedded and nothing is compressed, so
//! the file is plain to inspect. The cross-reference table gives each object's exact byte
//! offset (a test checks every entry).

use std::fmt::Write as _;

use super::destruction::Certificate;
use crate::i18n::{format_time, tr, Lang, Ui};

/// Page size (A4, in points) and layout.
const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 56.0;
const LEADING: f32 = 15.0;
const SIZE: f32 = 10.0;
const TITLE_SIZE: f32 = 16.0;
/// Characters per line before wrapping (Helvetica 10 pt on A4 between margins; a CJK
/// character counts as two).
const WRAP: usize = 92;

/// One line of the document.
#[derive(Debug, Clone)]
struct Line {
    text: String,
    size: f32,
}

/// The certificate's lines, in the reader's language.
fn lines(c: &Certificate, ui: Ui) -> Vec<Line> {
    let l = ui.lang;
    let t = |key: &str| tr(l, key, &[]);
    let mut out = vec![Line {
        text: t("destr-cert-title"),
        size: TITLE_SIZE,
    }];
    let mut field = |key: &str, value: String| {
        for (i, part) in wrap(&format!("{}: {}", t(key), value))
            .into_iter()
            .enumerate()
        {
            out.push(Line {
                text: if i == 0 { part } else { format!("    {part}") },
                size: SIZE,
            });
        }
    };
    field("destr-col-certificate", c.id.to_string());
    field("destr-col-reference", c.reference.clone());
    field("destr-col-title", c.title.clone());
    field("destr-col-category", c.category_path.clone());
    field("destr-filed-at", format_time(ui, c.filed_at));
    field("destr-col-destroyed-at", format_time(ui, c.destroyed_at));
    field(
        "destr-col-reason-type",
        t(&format!("destr-reason-{}", c.reason_type)),
    );
    field("destr-col-purpose", c.purpose.clone());
    field("destr-col-requester", c.requester.clone());
    for a in &c.approvers {
        field(
            "destr-approver",
            format!("{} ({})", a.username, format_time(ui, a.decided_at)),
        );
    }
    field("destr-col-executor", c.executor.clone());
    field("destr-col-witness", c.witness.clone());
    field("destr-col-method", c.method.clone());
    field(
        "destr-paper",
        t(if c.paper {
            "destr-paper-yes"
        } else {
            "destr-paper-no"
        }),
    );
    field(
        "destr-col-erased-fields",
        if c.erased_fields.is_empty() {
            "-".into()
        } else {
            c.erased_fields.join(", ")
        },
    );
    field("destr-files-count", c.files.len().to_string());
    for (i, f) in c.files.iter().enumerate() {
        field(
            "destr-col-file",
            format!("{}. {} (v{}, {} bytes)", i + 1, f.name, f.version, f.size),
        );
        field("destr-col-sha256", f.sha256.clone());
    }
    field("destr-shredded", t("destr-shredded-text"));
    out
}

/// Width of `s` in wrap units (a character outside ASCII counts as two).
fn width(s: &str) -> usize {
    s.chars().map(|c| if c.is_ascii() { 1 } else { 2 }).sum()
}

/// Splits `s` into lines of at most [`WRAP`] units, at spaces where there are some.
fn wrap(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in s.chars() {
        if width(&cur) + width(&c.to_string()) > WRAP {
            // Break at the last space of the line when it is not too far back.
            match cur.rfind(' ').filter(|&i| i > cur.len() / 2) {
                Some(i) => {
                    let rest = cur[i + 1..].to_string();
                    cur.truncate(i);
                    out.push(std::mem::take(&mut cur));
                    cur = rest;
                }
                None => out.push(std::mem::take(&mut cur)),
            }
        }
        cur.push(c);
    }
    if !cur.is_empty() || out.is_empty() {
        out.push(cur);
    }
    out
}

/// A PDF literal string for ASCII text.
fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('(');
    for c in s.chars() {
        match c {
            '(' | ')' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push(')');
    out
}

/// A PDF hex string of UCS-2 (UTF-16BE, BMP only) code units.
fn ucs2_hex(s: &str) -> String {
    let mut out = String::from("<");
    for c in s.chars() {
        let unit = u16::try_from(u32::from(c)).unwrap_or(u16::from(b'?'));
        // Surrogate code points never occur in a `char`; controls show as `?`.
        let unit = if unit < 0x20 { u16::from(b'?') } else { unit };
        let _ = write!(out, "{unit:04X}");
    }
    out.push('>');
    out
}

/// The content stream of one page.
fn page_content(lines: &[Line]) -> String {
    let mut s = String::new();
    let mut y = PAGE_H - MARGIN;
    for line in lines {
        y -= if line.size > SIZE {
            LEADING * 1.6
        } else {
            LEADING
        };
        let (font, text) = if line.text.is_ascii() {
            ("F1", literal(&line.text))
        } else {
            ("F2", ucs2_hex(&line.text))
        };
        let _ = writeln!(
            s,
            "BT /{font} {:.1} Tf {MARGIN:.1} {y:.1} Td {text} Tj ET",
            line.size
        );
    }
    s
}

/// Writes objects with their offsets, then the cross-reference table and trailer.
struct Writer {
    out: Vec<u8>,
    offsets: Vec<usize>,
}

impl Writer {
    fn new() -> Writer {
        // The comment of bytes above 127 marks the file as binary for transfer programs
        // (written as UTF-8, so the whole file stays valid UTF-8 and easy to inspect).
        let out = "%PDF-1.4\n%\u{e2}\u{e3}\u{cf}\u{d3}\n".as_bytes().to_vec();
        Writer {
            out,
            offsets: Vec::new(),
        }
    }

    /// Object number `n` (numbers are given in order from 1).
    fn object(&mut self, n: usize, body: &str) {
        debug_assert_eq!(n, self.offsets.len() + 1);
        self.offsets.push(self.out.len());
        self.out
            .extend_from_slice(format!("{n} 0 obj\n{body}\nendobj\n").as_bytes());
    }

    fn stream(&mut self, n: usize, content: &str) {
        let body = format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        );
        self.object(n, &body);
    }

    fn finish(mut self, root: usize, info: usize) -> Vec<u8> {
        let xref = self.out.len();
        let count = self.offsets.len() + 1;
        let mut t = format!("xref\n0 {count}\n0000000000 65535 f \n");
        for off in &self.offsets {
            let _ = writeln!(t, "{off:010} 00000 n ");
        }
        let _ = write!(
            t,
            "trailer\n<< /Size {count} /Root {root} 0 R /Info {info} 0 R >>\nstartxref\n{xref}\n%%EOF\n"
        );
        self.out.extend_from_slice(t.as_bytes());
        self.out
    }
}

/// Lines per page below the title area.
const LINES_PER_PAGE: usize = 46;

/// The certificate as a PDF, in the language of `ui`.
pub fn pdf(c: &Certificate, ui: Ui) -> Vec<u8> {
    let all = lines(c, ui);
    let pages: Vec<&[Line]> = all.chunks(LINES_PER_PAGE).collect();
    // Objects: 1 catalog, 2 page tree, 3 Helvetica, 4 STSong-Light (Type0), 5 its CID
    // font, 6 its descriptor, 7 info, then a page and its content per page.
    let first_page = 8;
    let kids: Vec<String> = (0..pages.len())
        .map(|i| format!("{} 0 R", first_page + 2 * i))
        .collect();
    let mut w = Writer::new();
    w.object(1, "<< /Type /Catalog /Pages 2 0 R >>");
    w.object(
        2,
        &format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            kids.join(" "),
            pages.len()
        ),
    );
    w.object(
        3,
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    );
    w.object(
        4,
        "<< /Type /Font /Subtype /Type0 /BaseFont /STSong-Light /Encoding /UniGB-UCS2-H /DescendantFonts [5 0 R] >>",
    );
    w.object(
        5,
        "<< /Type /Font /Subtype /CIDFontType0 /BaseFont /STSong-Light \
         /CIDSystemInfo << /Registry (Adobe) /Ordering (GB1) /Supplement 2 >> \
         /FontDescriptor 6 0 R /DW 1000 /W [1 95 500] >>",
    );
    w.object(
        6,
        "<< /Type /FontDescriptor /FontName /STSong-Light /Flags 6 /FontBBox [-25 -254 1000 880] \
         /ItalicAngle 0 /Ascent 880 /Descent -120 /CapHeight 880 /StemV 93 >>",
    );
    w.object(
        7,
        &format!(
            "<< /Title {} /Producer (Strongroom) /CreationDate (D:{}Z) >>",
            literal(&format!("Certificate of destruction {}", c.reference)),
            c.destroyed_at.format("%Y%m%d%H%M%S")
        ),
    );
    for (i, lines) in pages.iter().enumerate() {
        let page = first_page + 2 * i;
        w.object(
            page,
            &format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_W:.0} {PAGE_H:.0}] \
                 /Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents {} 0 R >>",
                page + 1
            ),
        );
        w.stream(page + 1, &page_content(lines));
    }
    w.finish(1, 7)
}

/// The file name of a certificate (ASCII: it goes into a header).
pub fn file_name(c: &Certificate) -> String {
    let stem: String = c
        .reference
        .chars()
        .filter(|ch| ch.is_ascii_alphanumeric() || *ch == '-')
        .collect();
    format!("destruction-certificate-{stem}.pdf")
}

/// The language and time zone a PDF is written in (for callers without a page).
pub fn ui_for(lang: Lang, zone: chrono_tz::Tz) -> Ui {
    Ui::new(lang, zone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::destruction::{Approver, DestroyedFile};
    use chrono::Utc;
    use uuid::Uuid;

    fn cert() -> Certificate {
        Certificate {
            id: Uuid::new_v4(),
            record_id: Uuid::new_v4(),
            request_id: Uuid::new_v4(),
            reference: "CONTR-2026-000001".into(),
            title: "合同 (Huaxin) \\ back".into(),
            category_code: "CONTR".into(),
            category_path: "Customers / Contracts".into(),
            filed_at: Utc::now(),
            reason_type: "erasure".into(),
            purpose: "客户要求删除其个人信息".into(),
            requester: "arch1".into(),
            approvers: vec![Approver {
                username: "sup1".into(),
                decided_at: Utc::now(),
                comment: String::new(),
            }],
            executor: "arch2".into(),
            witness: "sup2".into(),
            method: "cross-cut shredder, crypto-shred".into(),
            files: (0..60)
                .map(|i| DestroyedFile {
                    file_id: Uuid::new_v4(),
                    version: i + 1,
                    name: format!("scan-{i}.pdf"),
                    media_type: "application/pdf".into(),
                    size: 1234,
                    sha256: format!("{:064x}", i),
                    uploaded_at: Utc::now(),
                })
                .collect(),
            erased_fields: vec!["phone".into()],
            paper: true,
            destroyed_at: Utc::now(),
        }
    }

    /// Every xref entry points at its `N 0 obj`, and startxref at `xref`.
    pub(crate) fn check_structure(pdf: &[u8]) {
        let text = String::from_utf8_lossy(pdf);
        assert!(pdf.starts_with(b"%PDF-1.4\n"));
        assert!(text.ends_with("%%EOF\n"));
        let sx = text.rfind("startxref\n").expect("startxref");
        let xref: usize = text[sx + 10..].lines().next().unwrap().parse().unwrap();
        assert_eq!(&pdf[xref..xref + 5], b"xref\n");
        let table = &text[xref..];
        let mut lines = table.lines().skip(1);
        let head = lines.next().unwrap();
        let count: usize = head.split(' ').nth(1).unwrap().parse().unwrap();
        let entries: Vec<&str> = lines.take(count).collect();
        assert_eq!(entries[0], "0000000000 65535 f ");
        for (n, e) in entries.iter().enumerate().skip(1) {
            assert_eq!(e.len(), 19, "{e:?}"); // plus the newline: 20 bytes
            let off: usize = e[..10].parse().unwrap();
            let want = format!("{n} 0 obj\n");
            assert_eq!(&pdf[off..off + want.len()], want.as_bytes(), "object {n}");
        }
        assert!(text.contains(&format!("trailer\n<< /Size {count} /Root 1 0 R")));
        // Each stream's /Length is its exact byte count.
        for (at, _) in text.match_indices("<< /Length ") {
            let rest = &text[at + 11..];
            let len: usize = rest[..rest.find(' ').unwrap()].parse().unwrap();
            let start = at + rest.find("stream\n").unwrap() + 11 + 7;
            assert_eq!(&pdf[start + len..start + len + 10], b"\nendstream");
        }
    }

    #[test]
    fn the_pdf_is_well_formed_and_lists_every_hash_in_both_languages() {
        let c = cert();
        for lang in Lang::ALL {
            let pdf = pdf(&c, ui_for(lang, chrono_tz::Asia::Shanghai));
            check_structure(&pdf);
            let text = String::from_utf8_lossy(&pdf);
            for f in &c.files {
                assert!(text.contains(&f.sha256), "{}", f.sha256);
            }
            // 60 files do not fit one page.
            assert!(
                text.contains("/Count 4") || text.contains("/Count 3"),
                "{text}"
            );
            // The Chinese purpose in UCS-2 hex: 客 is U+5BA2.
            assert!(text.contains("5BA2"));
            assert!(text.contains("(CONTR-2026-000001)") || text.contains("CONTR-2026-000001"));
        }
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(literal("a(b)\\c"), "(a\\(b\\)\\\\c)");
        assert_eq!(ucs2_hex("A合"), "<00415408>");
        assert_eq!(ucs2_hex("😀"), "<003F>");
        let w = wrap(&"word ".repeat(40));
        assert!(w.iter().all(|l| width(l) <= WRAP), "{w:?}");
        assert!(wrap(&"合".repeat(100)).len() >= 3);
    }
}
