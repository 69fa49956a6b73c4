//! Small inline-SVG line charts, shared by `vigil replay --html` and the service's analysis page:
//! one implementation of the axes, ticks and series, so that both draw a metric the same way and a
//! fix to one is a fix to both. No script, no external asset; every label is escaped.

use std::fmt::Write as _;

/// `s` safe inside HTML (and SVG) text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// A stretch of the time axis drawn as a coloured strip along the top of the plot, with a
/// boundary line at its end: how the page shows each interval and its verdict on the series.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    /// Unix seconds.
    pub start: f64,
    /// Unix seconds.
    pub end: f64,
    /// A CSS colour (not escaped: callers pass constants).
    pub colour: &'static str,
    /// Tooltip text (escaped here).
    pub label: String,
}

/// One chart: a baseline and a canary series of `(unix seconds, value)` over a shared time axis
/// counted in minutes from `origin`.
#[derive(Debug, Clone, Copy)]
pub struct Chart<'a> {
    /// Title (escaped here).
    pub title: &'a str,
    /// Baseline points.
    pub baseline: &'a [(f64, f64)],
    /// Baseline points the judges did not use, drawn faded apart from the baseline.
    pub masked: &'a [(f64, f64)],
    /// Canary points.
    pub canary: &'a [(f64, f64)],
    /// Unix seconds the time axis counts from, marked with a dashed line.
    pub origin: f64,
    /// What the origin is (`canary start`, `fault onset`).
    pub origin_label: &'a str,
    /// Interval strips.
    pub bands: &'a [Band],
    /// Width in pixels.
    pub width: f64,
    /// Whether the value axis starts at zero (the replay report's plots); otherwise it starts
    /// at a round number under the data, so that a slow drift such as a leak is visible.
    pub from_zero: bool,
}

impl<'a> Chart<'a> {
    /// A chart of the replay report's size with no masked points and no bands.
    pub fn new(
        title: &'a str,
        baseline: &'a [(f64, f64)],
        canary: &'a [(f64, f64)],
        origin: f64,
        origin_label: &'a str,
    ) -> Self {
        Chart {
            title,
            baseline,
            masked: &[],
            canary,
            origin,
            origin_label,
            bands: &[],
            width: 380.0,
            from_zero: true,
        }
    }
}

/// The step of nice ticks over `[lo, hi]`: 1, 2 or 5 times a power of ten, giving at most about
/// `want` of them (None for an empty or non-finite range).
fn tick_step(lo: f64, hi: f64, want: usize) -> Option<f64> {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return None;
    }
    let raw = span / want.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    Some(
        [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| span / s <= want as f64)
            .unwrap_or(10.0 * mag),
    )
}

/// Nice tick positions covering `[lo, hi]`: steps of 1, 2 or 5 times a power of ten, about
/// `want` of them, so that a reader can read values off the axis and not only its two ends.
pub fn ticks(lo: f64, hi: f64, want: usize) -> Vec<f64> {
    let Some(step) = tick_step(lo, hi, want) else {
        return vec![lo];
    };
    let first = (lo / step).ceil() * step;
    (0..=want + 1)
        .map(|i| first + i as f64 * step)
        .filter(|t| *t <= hi + step * 1e-9)
        .collect()
}

/// A number as an axis label: integers without decimals, small values with two.
// Exact on purpose: an integer-valued tick prints without decimals.
#[allow(clippy::float_cmp)]
pub fn fmt_num(v: f64) -> String {
    if v.abs() >= 10.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The chart as an `<svg>` element. Each non-empty series is one `<path>` (classes `baseline`,
/// `canary`, `masked`) with a dot per point; non-finite points are left out.
pub fn chart(c: &Chart<'_>) -> String {
    // Plot area inside margins: the title and the origin label sit in the top margin, tick labels
    // in the left and bottom margins, the legend under the axis — never on the data.
    let (w, h) = (c.width, 196.0);
    let (left, right, top, bottom) = (46.0, 10.0, 34.0, 46.0);
    let finite = |pts: &[(f64, f64)]| -> Vec<(f64, f64)> {
        pts.iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect()
    };
    let (baseline, masked, canary) = (finite(c.baseline), finite(c.masked), finite(c.canary));
    let all: Vec<(f64, f64)> = baseline
        .iter()
        .chain(&masked)
        .chain(&canary)
        .copied()
        .collect();
    let mut out = format!(
        "<svg class=\"chart\" width=\"{w}\" height=\"{h}\" xmlns=\"http://www.w3.org/2000/svg\" \
         font-size=\"10\" style=\"border:1px solid #eee\">"
    );
    let _ = write!(
        out,
        "<text x=\"6\" y=\"13\" font-weight=\"600\">{}</text>",
        escape(c.title)
    );
    if all.is_empty() {
        out.push_str("<text x=\"40\" y=\"90\" fill=\"#999\">no data</text></svg>");
        return out;
    }
    let xs = || {
        all.iter()
            .map(|p| p.0)
            .chain(c.bands.iter().flat_map(|b| [b.start, b.end]))
            .filter(|x| x.is_finite())
    };
    let x0 = xs().fold(f64::INFINITY, f64::min).min(c.origin);
    let x1 = xs().fold(f64::NEG_INFINITY, f64::max).max(c.origin + 1.0);
    let lowest = all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let y0 = if c.from_zero { lowest.min(0.0) } else { lowest };
    let mut y1 = all.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    // The axis runs from a tick at or under the data to one at or over it, so that the
    // smallest and the largest values can be read off it.
    let yt: Vec<f64> = match tick_step(y0, y1, 4) {
        Some(step) => {
            let (first, last) = ((y0 / step).floor() * step, (y1 / step).ceil() * step);
            // tick_step gives at most about 4 steps over the range; the bound is a guard.
            (0..16)
                .map(|i| first + f64::from(i) * step)
                .take_while(|t| *t <= last + step * 1e-9)
                .collect()
        }
        None => vec![y0, y1],
    };
    let y0 = yt.first().copied().unwrap_or(y0).min(y0);
    let y1 = yt.last().copied().unwrap_or(y1).max(y1);
    let (px0, px1, py0, py1) = (left, w - right, h - bottom, top);
    let sx = |x: f64| px0 + (x - x0) / (x1 - x0) * (px1 - px0);
    let sy = |y: f64| py0 - (y - y0) / (y1 - y0) * (py0 - py1);
    for t in &yt {
        let y = sy(*t);
        let _ = write!(
            out,
            "<line x1=\"{px0}\" y1=\"{y:.1}\" x2=\"{px1}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#777\">{}</text>",
            px0 - 4.0,
            y + 3.0,
            fmt_num(*t)
        );
    }
    for b in c.bands {
        let (bx0, bx1) = (sx(b.start), sx(b.end));
        let _ = write!(
            out,
            "<rect class=\"band\" x=\"{bx0:.1}\" y=\"{py1}\" width=\"{:.1}\" height=\"6\" fill=\"{}\"><title>{}</title></rect>\
             <line x1=\"{bx1:.1}\" y1=\"{py1}\" x2=\"{bx1:.1}\" y2=\"{py0}\" stroke=\"#ccc\" stroke-dasharray=\"2 3\"/>",
            (bx1 - bx0 - 1.0).max(1.0),
            b.colour,
            escape(&b.label)
        );
    }
    // Time axis in minutes from the origin, the scale a reader of a canary thinks in.
    let xt = ticks((x0 - c.origin) / 60.0, (x1 - c.origin) / 60.0, 5);
    for m in &xt {
        let x = sx(c.origin + m * 60.0);
        let _ = write!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{py0}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#bbb\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#777\">{}</text>",
            py0 + 3.0,
            py0 + 13.0,
            fmt_num(*m)
        );
    }
    let _ = write!(
        out,
        "<line x1=\"{px0}\" y1=\"{py0}\" x2=\"{px1}\" y2=\"{py0}\" stroke=\"#999\"/><line x1=\"{px0}\" y1=\"{py1}\" x2=\"{px0}\" y2=\"{py0}\" stroke=\"#999\"/><text x=\"{px1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#777\">minutes from {}</text>",
        py0 + 24.0,
        escape(c.origin_label)
    );
    let line = |pts: &[(f64, f64)], class: &str, color: &str, opacity: f64| -> String {
        if pts.is_empty() {
            return String::new();
        }
        let mut d = String::new();
        for (i, (x, y)) in pts.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { " L" },
                sx(*x),
                sy(*y)
            );
        }
        let dots: String = pts
            .iter()
            .map(|(x, y)| {
                format!(
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.8\" fill=\"{color}\"/>",
                    sx(*x),
                    sy(*y)
                )
            })
            .collect();
        format!(
            "<g opacity=\"{opacity}\"><path class=\"{class}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" d=\"{d}\"/>{dots}</g>"
        )
    };
    out.push_str(&line(&masked, "masked", "#9e9e9e", 0.35));
    out.push_str(&line(&baseline, "baseline", "#1565c0", 1.0));
    out.push_str(&line(&canary, "canary", "#e65100", 1.0));
    let ox = sx(c.origin);
    let (lx, anchor) = if ox > w / 2.0 {
        (ox - 3.0, "end")
    } else {
        (ox + 3.0, "start")
    };
    let _ = write!(
        out,
        "<line x1=\"{ox:.1}\" y1=\"{py1}\" x2=\"{ox:.1}\" y2=\"{py0}\" stroke=\"#c62828\" stroke-dasharray=\"4 3\"/><text x=\"{lx:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" fill=\"#c62828\">{}</text>",
        py1 - 4.0,
        escape(c.origin_label)
    );
    let legend_y = h - 5.0;
    let _ = write!(
        out,
        "<text x=\"{left}\" y=\"{legend_y}\" fill=\"#1565c0\">baseline</text><text x=\"{}\" y=\"{legend_y}\" fill=\"#e65100\">canary</text>",
        left + 50.0
    );
    if !masked.is_empty() {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{legend_y}\" fill=\"#9e9e9e\">masked: earlier incident, not used</text>",
            left + 95.0
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_numbers_inside_the_range() {
        assert_eq!(ticks(0.0, 100.0, 4), vec![0.0, 50.0, 100.0]);
        assert_eq!(ticks(0.0, 7.3, 4), vec![0.0, 2.0, 4.0, 6.0]);
        let t = ticks(-30.0, 3.0, 5);
        assert!(t.contains(&0.0) && t.contains(&-30.0), "{t:?}");
        assert!(t.len() >= 3 && t.len() <= 7, "{t:?}");
    }

    #[test]
    fn everything_from_outside_is_escaped() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
        let band = [Band {
            start: 0.0,
            end: 60.0,
            colour: "#2e7d32",
            label: "<b>".into(),
        }];
        let c = Chart {
            bands: &band,
            ..Chart::new("<i>t</i>", &[(0.0, 1.0)], &[(30.0, 2.0)], 0.0, "<o>")
        };
        let svg = chart(&c);
        assert!(!svg.contains("<i>") && !svg.contains("<b>") && !svg.contains("<o>"));
        assert!(svg.contains("&lt;i&gt;t&lt;/i&gt;") && svg.contains("<title>&lt;b&gt;</title>"));
    }

    #[test]
    fn one_path_per_series_with_a_point_each() {
        // Two baseline points, one canary point and a NaN that is left out; x from 0 to 60 s
        // over the plot's 46..370 px.
        let c = Chart::new(
            "m",
            &[(0.0, 1.0), (60.0, 2.0)],
            &[(30.0, 2.0), (45.0, f64::NAN)],
            0.0,
            "canary start",
        );
        let svg = chart(&c);
        assert_eq!(svg.matches("<path class=\"baseline\"").count(), 1);
        assert_eq!(svg.matches("<path class=\"canary\"").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 3, "{svg}");
        assert!(svg.contains("d=\"M46.0,"), "{svg}");
        assert!(svg.contains(" L370.0,"), "{svg}");
    }

    #[test]
    fn a_value_axis_not_from_zero_starts_on_a_round_tick_under_the_data() {
        let pts = [(0.0, 299.8), (60.0, 321.3)];
        let c = Chart {
            from_zero: false,
            ..Chart::new("m", &pts, &[], 0.0, "canary start")
        };
        let svg = chart(&c);
        // Ticks of 10 from 290 (under 299.8) to 330 (over 321.3); no 0.
        for t in ["290", "300", "310", "320", "330"] {
            assert!(
                svg.contains(&format!("text-anchor=\"end\" fill=\"#777\">{t}</text>")),
                "{t}: {svg}"
            );
        }
        assert!(
            !svg.contains("text-anchor=\"end\" fill=\"#777\">0</text>"),
            "{svg}"
        );
        // A range whose ticks of 5 hold one value only (50) still gets an axis: 45 to 55.
        let narrow = [(0.0, 45.314), (60.0, 53.547)];
        let svg = chart(&Chart {
            from_zero: false,
            ..Chart::new("m", &narrow, &[], 0.0, "canary start")
        });
        for t in ["45", "50", "55"] {
            assert!(
                svg.contains(&format!("text-anchor=\"end\" fill=\"#777\">{t}</text>")),
                "{t}: {svg}"
            );
        }
        let zero = chart(&Chart::new("m", &pts, &[], 0.0, "canary start"));
        assert!(
            zero.contains("text-anchor=\"end\" fill=\"#777\">0</text>"),
            "{zero}"
        );
    }
}
