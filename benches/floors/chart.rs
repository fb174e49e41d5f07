//! Line charts the benches draw of their own figures, as SVG files in
//! docs/img/, with plotters' SVG backend (the plotters criterion already
//! builds; no fonts are needed, the SVG names them and the viewer draws the
//! text).

use std::path::PathBuf;

use plotters::prelude::*;

/// One line: a name for the legend and its points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One chart of a file.
pub struct Panel {
    pub title: String,
    pub x: &'static str,
    pub y: &'static str,
    /// A base-2 logarithmic x axis (for counts such as 16, 256, 4096).
    pub log2_x: bool,
    /// A base-10 logarithmic y axis (for figures a hundred times apart).
    pub log10_y: bool,
    pub series: Vec<Series>,
}

/// The same variant gets the same colour in every chart.
fn colour(name: &str, i: usize) -> RGBColor {
    match name.split_whitespace().next().unwrap_or("") {
        "fencelock" | "notifications" => RGBColor(31, 119, 180),
        "rslock" => RGBColor(255, 127, 14),
        "floor_all" => RGBColor(110, 110, 110),
        "floor_quorum" => RGBColor(44, 160, 44),
        "polling" => RGBColor(214, 39, 40),
        _ => {
            let (r, g, b) = Palette99::pick(i).rgb();
            RGBColor(r, g, b)
        }
    }
}

/// Draws `panels` side by side into docs/img/`file`; returns its path.
pub fn draw(file: &str, panels: &[Panel]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/img");
    std::fs::create_dir_all(&dir).expect("create docs/img");
    let path = dir.join(file);
    let width = 520 * panels.len() as u32;
    let root = SVGBackend::new(&path, (width, 380)).into_drawing_area();
    root.fill(&WHITE).unwrap();
    for (area, panel) in root.split_evenly((1, panels.len())).iter().zip(panels) {
        draw_panel(area, panel).expect("draw a chart");
    }
    root.present().expect("write the SVG file");
    drop(root);
    path
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn draw_panel(area: &Area, panel: &Panel) -> Result<(), Box<dyn std::error::Error>> {
    // A log axis is drawn as a linear one over log(v), labelled with v.
    let x_of = |x: f64| if panel.log2_x { x.log2() } else { x };
    let y_of = |y: f64| if panel.log10_y { y.log10() } else { y };
    let points = panel.series.iter().flat_map(|s| &s.points);
    let (x_min, x_max) = span(points.clone().map(|&(x, _)| x_of(x)));
    let (y_min, y_max) = span(points.map(|&(_, y)| y_of(y)));
    let x_pad = (x_max - x_min).max(1.0) * 0.05;
    let y_range = if panel.log10_y {
        (y_min - 0.2)..(y_max + 0.2)
    } else {
        0.0..(y_max * 1.15).max(1e-9)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((x_min - x_pad)..(x_max + x_pad), y_range)?;
    let label_x = |v: &f64| {
        let x = if panel.log2_x { v.exp2() } else { *v };
        format!("{}", x.round())
    };
    let label_y = |v: &f64| {
        let y = if panel.log10_y { 10f64.powf(*v) } else { *v };
        if y.abs() >= 10.0 || y == 0.0 {
            format!("{y:.0}")
        } else {
            format!("{y:.1}")
        }
    };
    chart
        .configure_mesh()
        .x_desc(panel.x)
        .y_desc(panel.y)
        .x_label_formatter(&label_x)
        .y_label_formatter(&label_y)
        .x_labels(if panel.log2_x { 5 } else { 9 })
        .max_light_lines(0)
        .draw()?;
    for (i, series) in panel.series.iter().enumerate() {
        let colour = colour(&series.name, i);
        let line = series.points.iter().map(|&(x, y)| (x_of(x), y_of(y)));
        chart
            .draw_series(LineSeries::new(line, colour.stroke_width(2)).point_size(3))?
            .label(series.name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2)));
    }
    // The legend goes in an upper corner the lines leave free: the left
    // one when most lines rise, the right one when most fall.
    let falling = panel
        .series
        .iter()
        .filter(|s| s.points.first().map(|p| p.1) > s.points.last().map(|p| p.1))
        .count();
    let corner = if falling * 2 > panel.series.len() {
        SeriesLabelPosition::UpperRight
    } else {
        SeriesLabelPosition::UpperLeft
    };
    chart
        .configure_series_labels()
        .position(corner)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}

/// The least and the greatest of `values`.
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)))
}
