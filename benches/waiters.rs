//! Waiters on one key: 16, 256 and 4,096 tasks loop `lock` -> release on
//! one key, N = 5 local redis-server nodes, with release notifications (the
//! default) and with polling only (`wake_on_release(false)`, a 0-200 ms
//! random pause between attempts).
//!
//! Besides hand-overs per second and waits, it counts what the servers do
//! per hand-over: `INFO commandstats` deltas summed over the nodes, over a
//! steady window, the middle three fifths of each run (after every task
//! has made its first attempt and joined the line), divided by the
//! hand-overs of the same window; hand-overs per second are those of the
//! window too, waits those of the whole run. Without a thundering herd that figure stays about constant as
//! waiters grow: a release wakes one waiter, not all of them. Beside it,
//! this process's CPU time per hand-over over the same window (see
//! benches/floors/cpu.rs).
//!
//! Draws docs/img/waiters.svg.
//!
//! `cargo bench --bench waiters --features testing` (see docs/performance.md).

use std::time::{Duration, Instant};

use fencelock::{LockOptions, Locker, Redlock};

mod floors;
use floors::chart::{self, Panel, Series};
use floors::contend::{Run, contend, polling};
use floors::cpu::{Commands, Cpu};
use floors::stats::{median, percentile};

const NODES: usize = 5;
const WAITERS: [usize; 3] = [16, 256, 4096];
const KEY: &str = "waiters";

/// One run's figures: hand-overs/s in the steady window, wait p99 and max
/// over the run (ms), commands and scripts per hand-over (all nodes
/// together), this process's CPU per hand-over (µs), and failed acquires
/// and releases (node timeouts when the servers are overloaded).
type Figures = [f64; 7];

fn main() {
    let (runs, run) = (
        floors::run_count(2),
        floors::run_length(Duration::from_secs(6)),
    );
    let runtime = floors::runtime();
    let nodes = floors::nodes(NODES);
    let urls = nodes.urls();
    runtime.block_on(async {
        let conns = Commands::connect(&urls).await;
        let notified =
            Locker::new(Redlock::from_urls(&urls).unwrap(), LockOptions::default()).unwrap();
        let polled = notified.with_options(polling()).unwrap();
        let variants = [("notifications", &notified), ("polling only", &polled)];
        // [variant][waiters] -> medians
        let mut table = vec![Vec::new(); variants.len()];
        for &tasks in &WAITERS {
            for (v, (name, locker)) in variants.iter().enumerate() {
                let mut figures = Vec::new();
                for r in 1..=runs {
                    // A key per run: a wait cancelled at the end of one run
                    // cannot leave anything on the key of the next.
                    let key = format!("{KEY}-{tasks}-{v}-{r}");
                    let (result, window) =
                        tokio::join!(contend(locker, &key, tasks, run), window(&conns, run));
                    let acquisitions = result.acquisitions;
                    let f = figures_of(result, window);
                    println!(
                        "run {r} {tasks:>5} tasks {name:>13}: {acquisitions} acquisitions, {:.0} hand-overs/s, wait p99 {:.1} ms, max {:.1} ms, {:.1} commands ({:.2} scripts) and {:.0} µs of client CPU per hand-over, {} failed",
                        f[0], f[1], f[2], f[3], f[4], f[5], f[6]
                    );
                    figures.push(f);
                }
                let medians: Figures =
                    std::array::from_fn(|i| median(figures.iter().map(|f| f[i]).collect()));
                table[v].push(medians);
            }
        }
        println!(
            "\nwaiters on one key, N = {NODES}, medians of {runs} runs of {run:?}; \
             commands summed over the nodes, those run inside scripts included"
        );
        println!("variant        waiters  hand-overs/s  wait p99  wait max  commands/hand-over  scripts/hand-over  client µs/hand-over  failed");
        for (v, (name, _)) in variants.iter().enumerate() {
            for (tasks, [rate, p99, max, commands, scripts, client, failed]) in WAITERS.iter().zip(&table[v]) {
                println!(
                    "{name:<13} {tasks:>8} {rate:>13.0} {p99:>7.1}ms {max:>7.1}ms {commands:>19.1} {scripts:>18.2} {client:>20.1} {failed:>7.0}"
                );
            }
        }
        let path = chart::draw("waiters.svg", &panels(&variants.map(|v| v.0), &table));
        println!("chart: {}", path.display());
    });
}

/// The steady window of a run: the servers' commands and this process's
/// CPU over it, and when it started and ended.
struct Window {
    commands: Commands,
    client: Duration,
    from: Instant,
    to: Instant,
}

/// The middle three fifths of a run `run` long.
async fn window(
    conns: &[fencelock::deadpool_redis::redis::aio::MultiplexedConnection],
    run: Duration,
) -> Window {
    tokio::time::sleep(run / 5).await;
    let before = Commands::read(conns).await;
    let (cpu, from) = (Cpu::read("self"), Instant::now());
    tokio::time::sleep(run * 3 / 5).await;
    let (client, to) = (Cpu::read("self").since(&cpu).0, Instant::now());
    let commands = Commands::read(conns).await.since(before);
    Window {
        commands,
        client,
        from,
        to,
    }
}

fn figures_of(mut run: Run, window: Window) -> Figures {
    let Window {
        commands,
        client,
        from,
        to,
    } = window;
    run.waits.sort_by(f64::total_cmp);
    // No hand-over in the window (polling can starve everyone) gives an
    // infinite figure, printed as `inf` and left out of the chart.
    let handed = run
        .handed_at
        .iter()
        .filter(|&&at| at >= from && at < to)
        .count() as f64;
    [
        handed / (to - from).as_secs_f64(),
        percentile(&run.waits, 0.99) * 1e3,
        run.waits.last().copied().unwrap_or(0.0) * 1e3,
        commands.all as f64 / handed,
        commands.scripts as f64 / handed,
        client.as_secs_f64() * 1e6 / handed,
        run.failures as f64,
    ]
}

/// Hand-overs/s and commands per hand-over against waiters, per variant.
fn panels(names: &[&str], table: &[Vec<Figures>]) -> [Panel; 2] {
    let panel = |title: &str, y: &'static str, at: usize, log10_y: bool| Panel {
        title: title.into(),
        x: "waiting tasks (log scale)",
        y,
        log2_x: true,
        log10_y,
        series: names
            .iter()
            .zip(table)
            .map(|(name, rows)| Series {
                name: name.to_string(),
                points: WAITERS
                    .iter()
                    .zip(rows)
                    .map(|(&w, f)| (w as f64, f[at]))
                    .filter(|(_, y)| y.is_finite())
                    .collect(),
            })
            .collect(),
    };
    [
        panel(
            &format!("hand-overs/s, one key, N = {NODES}"),
            "hand-overs/s",
            0,
            false,
        ),
        // Polling's figure is tens of times notifications': a log scale
        // keeps both lines readable.
        panel(
            "server commands per hand-over (all nodes)",
            "commands (log scale)",
            3,
            true,
        ),
    ]
}
