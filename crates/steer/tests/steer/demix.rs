//! De-mixing (`gensplit_steer::demix`): stand-ins for an unknown rule's
//! inputs from averaged mixed data and the known rule's pure data.

use gensplit_models::{DataInputs, Dataset};
use gensplit_steer::demix;
use rand::{Rng, SeedableRng};

const PX: usize = 784;

fn images(px: Vec<f32>, labels: Vec<u32>) -> Dataset {
    Dataset {
        inputs: DataInputs::Images(px),
        labels,
    }
}

/// A binary template per (label, variant).
fn template(rng: &mut impl Rng) -> Vec<f32> {
    (0..PX).map(|_| if rng.gen_bool(0.5) { 1.0 } else { 0.0 }).collect()
}

/// Known data: for each label, 5 exact copies of the template that went
/// into the mixed images and 5 copies of another template of the same
/// label. The best-fitting 5 are the right copies, so the stand-ins are the
/// unknown inputs exactly (where they are below 1: `2m − p` is exact).
#[test]
fn stand_ins_recover_the_unknown_inputs_from_the_right_template() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    let labels: Vec<u32> = vec![0, 1, 2, 1, 0, 2];
    let right: Vec<Vec<f32>> = (0..3).map(|_| template(&mut rng)).collect();
    let wrong: Vec<Vec<f32>> = (0..3).map(|_| template(&mut rng)).collect();
    // unknown inputs: sparse values in [0, 0.9]
    let unknown: Vec<Vec<f32>> = labels
        .iter()
        .map(|_| {
            (0..PX)
                .map(|_| {
                    if rng.gen_bool(0.2) {
                        rng.gen_range(0.0..0.9)
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    let mixed_px: Vec<f32> = labels
        .iter()
        .zip(&unknown)
        .flat_map(|(&y, a)| {
            a.iter()
                .zip(&right[y as usize])
                .map(|(x, p)| (x + p) / 2.0)
                .collect::<Vec<_>>()
        })
        .collect();
    let mut known_px = Vec::new();
    let mut known_labels = Vec::new();
    for y in 0..3u32 {
        for copy in 0..10 {
            let t = if copy % 2 == 0 {
                &right[y as usize]
            } else {
                &wrong[y as usize]
            };
            known_px.extend_from_slice(t);
            known_labels.push(y);
        }
    }
    let mixed = images(mixed_px, labels.clone());
    let known = images(known_px, known_labels);
    let out = demix::average(&mixed, &known).unwrap();
    assert_eq!(out.labels, labels);
    let DataInputs::Images(px) = &out.inputs else {
        panic!("images in, images out")
    };
    let want: Vec<f32> = unknown.concat();
    let worst = px.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-6, "worst pixel error {worst}");
    // deterministic
    assert_eq!(demix::average(&mixed, &known).unwrap(), out);
}

#[test]
fn bad_inputs_are_typed_errors() {
    let mixed = images(vec![0.5; 2 * PX], vec![0, 3]);
    let known = images(vec![1.0; PX], vec![0]);
    let e = demix::average(&mixed, &known).unwrap_err();
    assert!(e.to_string().contains("label 3"), "{e}");
    let tokens = Dataset {
        inputs: DataInputs::Tokens { a: vec![0], b: vec![1] },
        labels: vec![0],
    };
    assert!(demix::average(&tokens, &known).is_err());
    assert!(demix::average(&mixed, &tokens).is_err());
}
