//! Accuracy of the template miner on the bundled Loghub-2k slice (corrected labels), and the
//! metric functions on hand-computed cases.

// Tests may unwrap (a panic is the failure report) and compare exact values on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use std::path::PathBuf;

use vigil_analyzer::logs::eval::{
    average, average_held_out, candidate_configs, evaluate, evaluate_file, find_datasets,
    leave_one_out, load_dataset, score, Scores,
};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn metrics_on_a_hand_made_case() {
    // Messages 0..5: truth A A B B C; predicted groups {0,1} {2} {3,4}; predicted texts A A B x x.
    // GA: only group {0,1} equals a true group (A) -> 2/5.
    // PA: messages 0, 1, 2 have the right text -> 3/5.
    // FGA: 1 group right of 3 predicted and 3 true -> P = R = 1/3 -> F1 = 1/3.
    // FTA: texts "A" (all truth A) and "B" (all truth B) are correct, "x" not; 3 predicted texts,
    //      3 true templates -> P = R = 2/3 -> F1 = 2/3.
    let truth = ["A", "A", "B", "B", "C"];
    let groups = [1, 1, 2, 3, 3];
    let texts = ["A", "A", "B", "x", "x"];
    let s = score(&truth, &groups, &texts);
    assert!(close(s.ga, 0.4), "{s:?}");
    assert!(close(s.pa, 0.6), "{s:?}");
    assert!(close(s.fga, 1.0 / 3.0), "{s:?}");
    assert!(close(s.fta, 2.0 / 3.0), "{s:?}");
}

#[test]
fn metrics_with_unequal_precision_and_recall() {
    // Truth A A A B; predicted groups {0} {1} {2} {3}, texts t0 t1 t2 B.
    // GA: only {3} equals true group B -> 1/4. PA: message 3 -> 1/4.
    // FGA: 1 right of 4 predicted (P = 1/4) and 2 true (R = 1/2) -> 2PR/(P+R) = 1/3.
    // FTA: "B" correct; 4 predicted texts (P = 1/4), 2 true (R = 1/2) -> 1/3.
    let truth = ["A", "A", "A", "B"];
    let s = score(&truth, &[0, 1, 2, 3], &["t0", "t1", "t2", "B"]);
    assert!(close(s.ga, 0.25) && close(s.pa, 0.25), "{s:?}");
    assert!(close(s.fga, 1.0 / 3.0) && close(s.fta, 1.0 / 3.0), "{s:?}");
    // Perfect parse; and nothing at all.
    let p = score(&truth, &["a", "a", "a", "b"], &["A", "A", "A", "B"]);
    assert_eq!(
        p,
        Scores {
            ga: 1.0,
            pa: 1.0,
            fga: 1.0,
            fta: 1.0
        }
    );
    assert_eq!(score::<u8>(&[], &[], &[]), Scores::default());
}

/// Drain's GA on these files (drain3 with logparser's per-system settings), from the README of
/// the Loghub slice this repository's data was copied from.
const DRAIN_GA: [(&str, f64); 10] = [
    ("HDFS", 0.998),
    ("Hadoop", 0.948),
    ("Spark", 0.920),
    ("Zookeeper", 0.967),
    ("BGL", 0.963),
    ("HPC", 0.887),
    ("Thunderbird", 0.955),
    ("Windows", 0.997),
    ("Linux", 0.876),
    ("Android", 0.857),
];

#[test]
fn loghub_2k_accuracy_with_the_default_configuration() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../datasets/loghub");
    let files = find_datasets(&dir).unwrap();
    assert_eq!(
        files.len(),
        10,
        "expected the ten bundled systems in {}",
        dir.display()
    );
    let results: Vec<_> = files.iter().map(|f| evaluate_file(f).unwrap()).collect();
    for r in &results {
        assert_eq!(r.messages, 2000, "{}", r.system);
        let drain = DRAIN_GA.iter().find(|d| d.0 == r.system).map(|d| d.1);
        let drain = drain.unwrap_or_else(|| panic!("unexpected system {}", r.system));
        assert!(
            r.scores.ga >= drain - 0.02,
            "{}: GA {:.3} more than 0.02 below Drain's {drain}",
            r.system,
            r.scores.ga
        );
    }
    let avg = average(&results);
    // Targets of the issue: GA >= 0.95 and PA >= 0.60; asserted at what the miner reaches, so
    // a regression shows.
    assert!(avg.ga >= 0.975, "average GA {:.4}", avg.ga);
    assert!(avg.pa >= 0.90, "average PA {:.4}", avg.pa);
    assert!(avg.fga >= 0.92, "average FGA {:.4}", avg.fga);
    assert!(avg.fta >= 0.80, "average FTA {:.4}", avg.fta);
}

/// Leave one system out: each fold's setting is the best on the *other* nine (recomputed here
/// by brute force), the held-out score is that setting's score on the tenth, and the average
/// stays at the level the issue asks of unseen systems.
#[test]
fn leave_one_system_out_chooses_on_the_others() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../datasets/loghub");
    let data: Vec<_> = find_datasets(&dir)
        .unwrap()
        .iter()
        .map(|f| load_dataset(f).unwrap())
        .collect();
    let candidates = candidate_configs();
    assert!(candidates.len() > 1);
    let folds = leave_one_out(&data, &candidates);
    assert_eq!(folds.len(), data.len());
    let ga: Vec<Vec<f64>> = candidates
        .iter()
        .map(|c| data.iter().map(|d| evaluate(d, c).scores.ga).collect())
        .collect();
    for (s, fold) in folds.iter().enumerate() {
        assert_eq!(fold.system, data[s].system);
        let train = |c: usize| {
            (0..data.len())
                .filter(|&k| k != s)
                .map(|k| ga[c][k])
                .sum::<f64>()
                / (data.len() - 1) as f64
        };
        let best = (0..candidates.len()).map(train).fold(f64::MIN, f64::max);
        assert!(close(fold.train_ga, best), "{}: {fold:?}", fold.system);
        let chosen = candidates
            .iter()
            .position(|c| {
                c.similarity == fold.similarity && c.distinct_constants == fold.distinct_constants
            })
            .unwrap();
        assert!(close(train(chosen), best));
        assert!(close(fold.scores.ga, ga[chosen][s]), "{}", fold.system);
    }
    let avg = average_held_out(&folds);
    assert!(avg.ga >= 0.94, "leave-one-out average GA {:.4}", avg.ga);
}

/// Patterns learned on one run carry into the next: a miner seeded with the saved library puts
/// the same messages under the library's ids and creates no new templates.
#[test]
fn saved_library_carries_templates_into_the_next_run() {
    use vigil_analyzer::logs::eval::parse_csv;
    use vigil_analyzer::logs::{Miner, MinerConfig, TemplateLibrary};

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../datasets/loghub");
    for system in ["HDFS", "Linux", "Android"] {
        let text =
            std::fs::read_to_string(dir.join(format!("{system}_2k.log_structured_corrected.csv")))
                .unwrap();
        let rows = parse_csv(&text).unwrap();
        let col = rows[0].iter().position(|h| h == "Content").unwrap();
        let lines: Vec<&str> = rows[1..].iter().map(|r| r[col].as_str()).collect();

        let mut first = Miner::new(MinerConfig::default());
        let ids: Vec<_> = lines.iter().map(|l| first.add_id(l)).collect();
        let finals: Vec<_> = ids.iter().map(|&id| first.resolve(id)).collect();
        let json = first.library().to_json();
        let lib = TemplateLibrary::from_json(&json).unwrap();

        let mut second = Miner::with_library(MinerConfig::default(), &lib);
        let again: Vec<_> = lines.iter().map(|l| second.add_id(l)).collect();
        let again: Vec<_> = again.iter().map(|&id| second.resolve(id)).collect();
        assert_eq!(again, finals, "{system}: ids differ in the seeded run");
        assert_eq!(
            second.library().templates.len(),
            lib.templates.len(),
            "{system}"
        );
        let total: u64 = second.library().templates.iter().map(|t| t.count).sum();
        assert_eq!(
            total,
            2 * lines.len() as u64,
            "{system}: counts carry over and add up"
        );
    }
}
