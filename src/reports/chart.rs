//! Charts drawn on the server as SVG, so the statistics page needs no script.
//!
//! Guarantees: every label is XML-escaped (names and categories are people's text); the
//! chart scales to its container (`viewBox`, no fixed width), so it never widens a narrow
//! page; each chart has `role="img"` and a title naming it, and each bar a `<title>` with
//! its label and value, for screen readers and hover. The numbers are also on the page as
//! a table; the chart is never the only place a figure is shown.

/// One bar: its label and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: i64,
}

impl Bar {
    pub fn new(label: impl Into<String>, value: i64) -> Bar {
        Bar {
            label: label.into(),
            value,
        }
    }
}

const WIDTH: i64 = 640;
const INK: &str = "#1f2933";
const FILL: &str = "#2b5797";
const GRID: &str = "#9aa5b1";

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c < ' ' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A label cut to `max` display columns (a CJK character counts two), with an ellipsis.
fn shorten(s: &str, max: usize) -> String {
    let width = |c: char| if (c as u32) >= 0x1100 { 2 } else { 1 };
    if s.chars().map(width).sum::<usize>() <= max {
        return s.to_string();
    }
    let mut used = 0;
    let mut out = String::new();
    for c in s.chars() {
        if used + width(c) > max.saturating_sub(1) {
            break;
        }
        used += width(c);
        out.push(c);
    }
    out.push('…');
    out
}

/// The axis maximum: the smallest 1, 2 or 5 × 10ⁿ at or above `max` (at least 1).
pub fn nice_max(max: i64) -> i64 {
    let max = max.max(1);
    let mut step = 1i64;
    loop {
        for m in [1, 2, 5] {
            if m * step >= max {
                return m * step;
            }
        }
        step = step.saturating_mul(10);
    }
}

/// Horizontal bars, one row per bar, labels on the left and values at the bar's end.
pub fn bars(title: &str, bars: &[Bar]) -> String {
    let row = 26;
    let top = 8;
    let label_w = 200;
    let plot_w = WIDTH - label_w - 60;
    let height = top * 2 + row * bars.len().max(1) as i64;
    let max = nice_max(bars.iter().map(|b| b.value).max().unwrap_or(0));
    let mut svg = open(title, height);
    if bars.is_empty() {
        svg.push_str(&format!(
            "<text x=\"0\" y=\"{}\" fill=\"{INK}\" font-size=\"13\">–</text>",
            top + 16
        ));
    }
    for (i, b) in bars.iter().enumerate() {
        let y = top + row * i as i64;
        let w = if b.value > 0 {
            (b.value * plot_w / max).max(2)
        } else {
            0
        };
        let label = escape(&b.label);
        svg.push_str(&format!(
            "<g><title>{label}: {v}</title>\
             <text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\" fill=\"{INK}\" font-size=\"13\">{short}</text>\
             <rect x=\"{label_w}\" y=\"{ry}\" width=\"{w}\" height=\"{h}\" fill=\"{FILL}\"/>\
             <text x=\"{vx}\" y=\"{ty}\" fill=\"{INK}\" font-size=\"13\">{v}</text></g>",
            v = b.value,
            lx = label_w - 8,
            ty = y + 17,
            short = escape(&shorten(&b.label, 22)),
            ry = y + 4,
            h = row - 8,
            vx = label_w + w + 6,
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// Vertical columns over time (or any ordered labels), with a light grid at full scale
/// and, where it is a whole number, at half; with many columns only every n-th label is written under the axis.
pub fn columns(title: &str, bars: &[Bar]) -> String {
    let height = 220;
    let left = 44;
    let bottom = 36;
    let top = 12;
    let plot_w = WIDTH - left - 8;
    let plot_h = height - top - bottom;
    let max = nice_max(bars.iter().map(|b| b.value).max().unwrap_or(0));
    let n = bars.len().max(1) as i64;
    let slot = plot_w as f64 / n as f64;
    let bar_w = (slot * 0.7).max(1.0);
    let every = (n as f64 / 8.0).ceil().max(1.0) as usize;
    let mut svg = open(title, height);
    // The half line only where half the scale is a whole number (not for 1 or 5).
    let half = (max % 2 == 0).then_some((max / 2, top + plot_h / 2));
    for (value, y) in [Some((0, top + plot_h)), half, Some((max, top))]
        .into_iter()
        .flatten()
    {
        svg.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{x2}\" y1=\"{y}\" y2=\"{y}\" stroke=\"{GRID}\" stroke-width=\"1\"/>\
             <text x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\" fill=\"{INK}\" font-size=\"12\">{value}</text>",
            x2 = WIDTH - 8,
            tx = left - 6,
            ty = y + 4,
        ));
    }
    for (i, b) in bars.iter().enumerate() {
        let x = left as f64 + slot * i as f64 + (slot - bar_w) / 2.0;
        let h = b.value.max(0) * plot_h / max;
        let label = escape(&b.label);
        svg.push_str(&format!(
            "<g><title>{label}: {v}</title><rect x=\"{x:.1}\" y=\"{y}\" width=\"{bar_w:.1}\" height=\"{h}\" fill=\"{FILL}\"/></g>",
            v = b.value,
            y = top + plot_h - h,
        ));
        if i % every == 0 {
            svg.push_str(&format!(
                "<text x=\"{cx:.1}\" y=\"{ly}\" text-anchor=\"middle\" fill=\"{INK}\" font-size=\"12\">{label}</text>",
                cx = x + bar_w / 2.0,
                ly = height - bottom + 18,
            ));
        }
    }
    svg.push_str("</svg>");
    svg
}

fn open(title: &str, height: i64) -> String {
    let title = escape(title);
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {height}\" \
         class=\"chart\" role=\"img\" aria-label=\"{title}\" preserveAspectRatio=\"xMinYMin meet\">\
         <title>{title}</title>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_axis_rounds_up_to_a_readable_number() {
        assert_eq!(nice_max(0), 1);
        assert_eq!(nice_max(1), 1);
        assert_eq!(nice_max(3), 5);
        assert_eq!(nice_max(7), 10);
        assert_eq!(nice_max(11), 20);
        assert_eq!(nice_max(450), 500);
        assert_eq!(nice_max(501), 1000);
    }

    #[test]
    fn labels_are_escaped_and_bars_are_proportional() {
        let svg = bars(
            "Requests <by> department",
            &[
                Bar::new("<script>alert(1)</script>", 10),
                Bar::new("信贷部", 5),
            ],
        );
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains("aria-label=\"Requests &lt;by&gt; department\""));
        // 10 fills the plot (380 wide), 5 half of it.
        assert!(svg.contains("width=\"380\""), "{svg}");
        assert!(svg.contains("width=\"190\""), "{svg}");
        assert!(svg.contains("<title>信贷部: 5</title>"));
        assert!(
            !svg.contains(" width=\"640\""),
            "the chart scales to its container"
        );
    }

    #[test]
    fn long_labels_are_shortened_by_display_width() {
        assert_eq!(shorten("short", 26), "short");
        let cut = shorten(&"档案".repeat(20), 10);
        assert_eq!(cut, "档案档案…");
    }

    #[test]
    fn columns_label_every_nth_bucket_and_draw_every_bar() {
        let data: Vec<Bar> = (1..=30)
            .map(|d| Bar::new(format!("11-{d:02}"), d))
            .collect();
        let svg = columns("Requests per day", &data);
        assert_eq!(svg.matches("<rect").count(), 30);
        assert!(svg.contains(">11-01<") && svg.contains(">11-05<"));
        assert!(!svg.contains(">11-02<"), "only every 4th label fits");
        assert_eq!(columns("empty", &[]).matches("<rect").count(), 0);
    }

    #[test]
    fn the_grid_names_only_whole_values_each_once() {
        let axis = |svg: &str| -> Vec<String> {
            svg.split("text-anchor=\"end\" fill=\"#1f2933\" font-size=\"12\">")
                .skip(1)
                .filter_map(|t| t.split('<').next().map(str::to_string))
                .collect()
        };
        // A scale of 1 (and of 5) has no whole half: 0 and the top only.
        assert_eq!(axis(&columns("one", &[Bar::new("a", 1)])), ["0", "1"]);
        assert_eq!(axis(&columns("five", &[Bar::new("a", 4)])), ["0", "5"]);
        assert_eq!(axis(&columns("ten", &[Bar::new("a", 7)])), ["0", "5", "10"]);
    }
}
