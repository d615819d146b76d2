//! PNG charts with plotters' bitmap backend. Text is drawn with an embedded DejaVu Sans (plotters' `ab_glyph`
//! renderer draws nothing without a registered font, and no system fonts are needed). DejaVu Sans has no Hangul, so
//! a font that has it is used instead when one is found: `$MEDFORGE_CHART_FONT`, or a system Korean font (Debian's
//! fonts-nanum, fonts-noto-cjk, fonts-unfonts-core). Without one, Korean labels are drawn as boxes and a warning
//! says what to install.
use std::path::Path;
use std::sync::{Once, OnceLock};

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::ChartError;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// Where Korean-capable fonts live on common Linux distributions.
const HANGUL_FONTS: [&str; 6] = [
    "/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
    "/usr/share/fonts/truetype/nanum/NanumBarunGothic.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/unfonts-core/UnDotum.ttf",
    "/usr/share/fonts/truetype/baekmuk/dotum.ttf",
];

/// Whether the font in `bytes` can draw both Hangul and Latin text.
pub fn covers_hangul(bytes: &[u8]) -> bool {
    use ab_glyph::Font;
    match ab_glyph::FontRef::try_from_slice(bytes) {
        Ok(f) => ['가', '한', 'A', '1'].iter().all(|c| f.glyph_id(*c).0 != 0),
        Err(_) => false,
    }
}

/// The first readable Hangul-capable font among `candidates`.
pub fn find_hangul_font(candidates: &[std::path::PathBuf]) -> Option<(std::path::PathBuf, Vec<u8>)> {
    candidates.iter().find_map(|p| {
        let b = std::fs::read(p).ok()?;
        covers_hangul(&b).then(|| (p.clone(), b))
    })
}

/// The font charts draw with: a Hangul-capable one when found, else DejaVu Sans. `true` when it has Hangul.
fn init_font() -> bool {
    static HANGUL: OnceLock<bool> = OnceLock::new();
    *HANGUL.get_or_init(|| {
        let mut candidates: Vec<std::path::PathBuf> = Vec::new();
        if let Some(p) = std::env::var_os("MEDFORGE_CHART_FONT") {
            candidates.push(p.into());
        }
        candidates.extend(HANGUL_FONTS.iter().map(std::path::PathBuf::from));
        let (bytes, hangul): (&'static [u8], bool) = match find_hangul_font(&candidates) {
            Some((_, b)) => (Box::leak(b.into_boxed_slice()), true),
            None => (FONT, false),
        };
        for style in [FontStyle::Normal, FontStyle::Bold, FontStyle::Italic, FontStyle::Oblique] {
            let _ = plotters::style::register_font(FAMILY, style, bytes);
        }
        hangul
    })
}

/// Register the font, and warn once when `labels` have Hangul the font cannot draw.
fn prepare<'a>(labels: impl IntoIterator<Item = &'a str>) {
    let hangul_font = init_font();
    static WARNED: Once = Once::new();
    if !hangul_font && labels.into_iter().any(|l| l.chars().any(|c| ('\u{AC00}'..='\u{D7A3}').contains(&c))) {
        WARNED.call_once(|| {
            eprintln!(
                "warning: charts: no font with Hangul found, Korean labels are drawn as boxes; install fonts-nanum \
                 (Debian/Ubuntu) or set MEDFORGE_CHART_FONT=/path/to/font.ttf"
            )
        });
    }
}

type R = Result<(), ChartError>;

fn err<E: std::error::Error + Send + Sync + 'static>(e: E) -> ChartError {
    ChartError(Box::new(e))
}

/// One bar with its 95% CI (fractions 0..1).
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

/// Horizontal bars per specialty with CI whiskers.
pub fn specialty_bars(path: &Path, title: &str, bars: &[Bar]) -> R {
    prepare(bars.iter().map(|b| b.label.as_str()).chain([title]));
    let h = (120 + 28 * bars.len().max(1)) as u32;
    let root = BitMapBackend::new(path, (900, h)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let n = bars.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(220)
        .build_cartesian_2d(0f64..1.12f64, 0f64..n as f64)
        .map_err(err)?;
    let labels: Vec<String> = bars.iter().map(|b| short(&b.label, 30)).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("accuracy (95% bootstrap CI)")
        .x_label_formatter(&|x| if *x <= 1.0 + 1e-9 { format!("{x:.1}") } else { String::new() })
        .y_labels(2 * n + 1)
        .y_label_formatter(&|y| {
            let i = y.floor() as usize;
            if (y - i as f64 - 0.5).abs() < 1e-6 {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .label_style((FAMILY, 14))
        .draw()
        .map_err(err)?;
    for (i, b) in bars.iter().enumerate() {
        let color = if b.value < 0.5 { RGBColor(214, 96, 77) } else { RGBColor(67, 147, 195) };
        let y = i as f64;
        chart
            .draw_series(std::iter::once(Rectangle::new([(0.0, y + 0.15), (b.value, y + 0.85)], color.filled())))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(b.low, y + 0.5), (b.high, y + 0.5)],
                BLACK.stroke_width(2),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(format!("{:.1}%", b.value * 100.0), (1.01, y + 0.62), (FAMILY, 13))))
            .map_err(err)?;
    }
    root.present().map_err(err)
}

/// Grouped bars: per group (overall, then specialties), one bar per model.
pub fn comparison_bars(path: &Path, title: &str, models: &[String], groups: &[(String, Vec<Bar>)]) -> R {
    comparison_bars_with(path, title, "accuracy", models, groups)
}

/// [`comparison_bars`] with the y axis named `y_desc` (a 0-1 score).
pub fn comparison_bars_with(
    path: &Path,
    title: &str,
    y_desc: &str,
    models: &[String],
    groups: &[(String, Vec<Bar>)],
) -> R {
    prepare(groups.iter().map(|(n, _)| n.as_str()).chain(models.iter().map(String::as_str)).chain([title]));
    let root = BitMapBackend::new(path, (1000, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let g = groups.len().max(1);
    let m = models.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(70)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..g as f64, 0f64..1f64)
        .map_err(err)?;
    let names: Vec<String> = groups.iter().map(|(n, _)| short(n, 14)).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(g * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 1e-6 {
                names.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(y_desc)
        .label_style((FAMILY, 13))
        .draw()
        .map_err(err)?;
    let palette = [RGBColor(150, 150, 150), RGBColor(33, 102, 172), RGBColor(178, 24, 43), RGBColor(27, 120, 55)];
    let w = 0.8 / m as f64;
    for (k, model) in models.iter().enumerate() {
        let color = palette[k % palette.len()];
        let mut rects = Vec::new();
        let mut whiskers = Vec::new();
        for (i, (_, bars)) in groups.iter().enumerate() {
            if let Some(b) = bars.get(k) {
                let x0 = i as f64 + 0.1 + k as f64 * w;
                rects.push(Rectangle::new([(x0, 0.0), (x0 + w * 0.9, b.value)], color.filled()));
                whiskers.push(PathElement::new(
                    vec![(x0 + w * 0.45, b.low), (x0 + w * 0.45, b.high)],
                    BLACK.stroke_width(2),
                ));
            }
        }
        chart
            .draw_series(rects)
            .map_err(err)?
            .label(model.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
        chart.draw_series(whiskers).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FAMILY, 14))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Accuracy over training steps, with the CI as a band.
pub fn accuracy_over_steps(path: &Path, title: &str, points: &[(u64, f64, f64, f64)]) -> R {
    prepare([title]);
    let root = BitMapBackend::new(path, (900, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let max_step = points.iter().map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let min_step = points.iter().map(|p| p.0).min().unwrap_or(0) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(min_step..max_step.max(min_step + 1.0), 0f64..1f64)
        .map_err(err)?;
    chart.configure_mesh().x_desc("training step").y_desc("accuracy").label_style((FAMILY, 13)).draw().map_err(err)?;
    let band: Vec<(f64, f64)> =
        points.iter().map(|p| (p.0 as f64, p.3)).chain(points.iter().rev().map(|p| (p.0 as f64, p.2))).collect();
    chart.draw_series(std::iter::once(Polygon::new(band, RGBColor(33, 102, 172).mix(0.2)))).map_err(err)?;
    chart
        .draw_series(LineSeries::new(points.iter().map(|p| (p.0 as f64, p.1)), RGBColor(33, 102, 172).stroke_width(3)))
        .map_err(err)?;
    chart
        .draw_series(points.iter().map(|p| Circle::new((p.0 as f64, p.1), 4, RGBColor(33, 102, 172).filled())))
        .map_err(err)?;
    root.present().map_err(err)
}

/// Lines over training steps (loss curves): each series is a name, a colour index and its `(step, value)` points.
pub fn lines_over_steps(path: &Path, title: &str, y_desc: &str, series: &[(String, Vec<(f64, f64)>)]) -> R {
    prepare([title]);
    let root = BitMapBackend::new(path, (900, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let pts = || series.iter().flat_map(|s| s.1.iter());
    let (x0, x1) = pts().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = pts().filter(|p| p.1.is_finite()).fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let (x0, x1) = if x0 > x1 { (0.0, 1.0) } else { (x0, x1.max(x0 + 1.0)) };
    let (y0, y1) = if y0 > y1 { (0.0, 1.0) } else { (y0, y1) };
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
        .map_err(err)?;
    chart.configure_mesh().x_desc("training step").y_desc(y_desc).label_style((FAMILY, 13)).draw().map_err(err)?;
    let colours = [RGBColor(33, 102, 172), RGBColor(214, 96, 77), RGBColor(27, 120, 55), RGBColor(118, 42, 131)];
    for (i, (name, points)) in series.iter().enumerate() {
        let c = colours[i % colours.len()];
        let line = LineSeries::new(points.iter().copied(), c.stroke_width(2));
        chart
            .draw_series(line)
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3)));
        if points.len() <= 60 {
            chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, c.filled()))).map_err(err)?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FAMILY, 14))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

#[cfg(test)]
mod font_tests {
    use super::*;

    #[test]
    fn dejavu_has_no_hangul_and_is_not_picked_for_korean() {
        assert!(!covers_hangul(FONT), "DejaVu Sans has no Hangul");
        assert!(!covers_hangul(b"not a font"));
        let dir = tempfile::tempdir().unwrap();
        let dejavu = dir.path().join("DejaVuSans.ttf");
        std::fs::write(&dejavu, FONT).unwrap();
        assert!(find_hangul_font(&[dir.path().join("missing.ttf"), dejavu]).is_none());
    }

    /// Draws Korean labels into `$MEDFORGE_CHART_OUT` for a look (run by hand with a Korean font installed).
    #[test]
    #[ignore]
    fn korean_labels_chart_for_inspection() {
        let out = std::env::var_os("MEDFORGE_CHART_OUT")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("korean_chart.png"));
        let bar = |l: &str, v: f64| Bar { label: l.into(), value: v, low: v - 0.1, high: v + 0.1 };
        specialty_bars(&out, "전문과별 정확도", &[bar("내과", 0.62), bar("소아청소년과", 0.48), bar("surgery", 0.55)])
            .unwrap();
    }
}
