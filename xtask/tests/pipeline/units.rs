//! Unit tests of xtask's modules, kept out of the library so that `cargo
//! test` compiles xtask once (`[lib] test = false` in xtask/Cargo.toml).

mod artifact {
    use sha2::{Digest, Sha256};
    use std::path::PathBuf;
    use xtask::artifact::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gensplit-artifact-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn payload_hash_names_the_result_not_the_key() {
        let store = Store::open(&tmpdir("ph")).unwrap();
        let k1 = Key::of("demo", 1, &1u32, &[]).unwrap();
        let k2 = Key::of("demo", 2, &2u32, &[]).unwrap();
        assert_eq!(store.payload_sha256("demo", &k1), None);
        store.save("demo", &k1, &vec![1.0f32, 2.0], 0.1).unwrap();
        store.save("demo", &k2, &vec![1.0f32, 2.0], 0.2).unwrap();
        let h1 = store.payload_sha256("demo", &k1).unwrap();
        let payload = bincode::serialize(&vec![1.0f32, 2.0]).unwrap();
        let direct: String = Sha256::digest(&payload).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(h1, direct);
        assert_eq!(store.payload_sha256("demo", &k2), Some(h1.clone()));
        store.save("demo", &k2, &vec![1.0f32, 2.5], 0.2).unwrap();
        assert_ne!(store.payload_sha256("demo", &k2), Some(h1));
        std::fs::write(store.path("demo", &k1), b"GSPLT").unwrap();
        assert_eq!(store.payload_sha256("demo", &k1), None);
    }

    #[test]
    fn roundtrip_and_corruption_detection() {
        let store = Store::open(&tmpdir("rt")).unwrap();
        let key = Key::of("demo", 1, &vec![1u32, 2], &[]).unwrap();
        let value = vec![1.5f32, -2.0, 3.25];
        assert!(store.load::<Vec<f32>>("demo", &key).unwrap().is_none());
        let path = store.save("demo", &key, &value, 1.5).unwrap();
        assert_eq!(store.compute_seconds("demo", &key), Some(1.5));
        assert_eq!(store.load::<Vec<f32>>("demo", &key).unwrap(), Some(value.clone()));
        let good = std::fs::read(&path).unwrap();
        // flip one payload byte -> checksum error
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(matches!(
            store.load::<Vec<f32>>("demo", &key),
            Err(ArtifactError::Checksum { .. })
        ));
        // truncate -> truncated
        std::fs::write(&path, &good[..good.len() - 3]).unwrap();
        assert!(matches!(
            store.load::<Vec<f32>>("demo", &key),
            Err(ArtifactError::Truncated { .. })
        ));
        std::fs::write(&path, &good[..10]).unwrap();
        assert!(matches!(
            store.load::<Vec<f32>>("demo", &key),
            Err(ArtifactError::Truncated { .. })
        ));
        // bad magic
        let mut bad = good.clone();
        bad[0] = b'X';
        std::fs::write(&path, &bad).unwrap();
        assert!(matches!(
            store.load::<Vec<f32>>("demo", &key),
            Err(ArtifactError::BadHeader { .. })
        ));
        // another key's file under this name
        let other = Key::of("demo", 2, &vec![1u32, 2], &[]).unwrap();
        std::fs::write(&path, encode(&other, &value).unwrap()).unwrap();
        assert!(matches!(
            store.load::<Vec<f32>>("demo", &key),
            Err(ArtifactError::KeyMismatch { .. })
        ));
    }

    #[test]
    fn keys_depend_on_every_part() {
        let k = |s: &str, v: u32, c: u32, i: &[Key]| Key::of(s, v, &c, i).unwrap();
        let base = k("a", 1, 7, &[]);
        assert_eq!(base, k("a", 1, 7, &[]));
        assert_ne!(base, k("b", 1, 7, &[]));
        assert_ne!(base, k("a", 2, 7, &[]));
        assert_ne!(base, k("a", 1, 8, &[]));
        assert_ne!(base, k("a", 1, 7, &[base]));
    }
}

mod blocks {
    use gensplit_models::{AnyModel, DataInputs, Dataset, ModMlp, ModMlpConfig, Model};
    use xtask::blocks::*;

    #[test]
    fn per_block_rows_cover_the_layers() {
        let mlp = ModMlp::new(&ModMlpConfig {
            p: 5,
            embed: 3,
            hidden: 6,
        })
        .unwrap();
        let theta: Vec<f32> = mlp.init(0);
        let (a, b): (Vec<u32>, Vec<u32>) = (0..25).map(|i| (i / 5, i % 5)).unzip();
        let labels = a.iter().zip(&b).map(|(x, y)| (x + y) % 5).collect();
        let data = Dataset {
            inputs: DataInputs::Tokens { a, b },
            labels,
        };
        let model = AnyModel::ModMlp(mlp);
        let n = theta.len();
        let u: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        let rows = per_block(&model, &theta, &data, 10, &[u.clone(), u.clone()], 1, 8, 3, true).unwrap();
        let labels: Vec<&str> = rows.iter().map(|r| r.block.as_str()).collect();
        assert_eq!(labels, ["embed", "fc1.*", "fc2.*"]);
        assert_eq!(rows.iter().map(|r| r.params).sum::<usize>(), n);
        let share: f64 = rows.iter().map(|r| r.top_vector_share[0]).sum();
        assert!((share - 1.0).abs() < 1e-9, "{share}");
        assert!(rows
            .iter()
            .all(|r| r.top_vector_share.len() == 1 && r.trace_std.is_finite()));
        let table = markdown_table(&rows);
        assert_eq!(table.lines().count(), 2 + rows.len());
        assert!(table.contains("| `fc2.*` | 35 |"), "{table}");
        assert!(per_block(&model, &theta, &data, 10, &[], 1, 1, 3, true).is_err());
        // f32 products: the same table up to f32 rounding (same probes and
        // start vectors)
        let rows32 = per_block(&model, &theta, &data, 10, &[u.clone(), u], 1, 8, 3, false).unwrap();
        for (a, b) in rows.iter().zip(&rows32) {
            assert_eq!((&a.block, a.params), (&b.block, b.params));
            for (x, y) in [(a.top_eigenvalue, b.top_eigenvalue), (a.trace, b.trace)] {
                assert!(
                    (x - y).abs() <= 1e-3 * x.abs().max(1e-3),
                    "{}: f64 {x} vs f32 {y}",
                    a.block
                );
            }
            assert_eq!(a.top_vector_share, b.top_vector_share);
        }
    }
}

mod export {
    use serde_json::json;
    use xtask::export::*;

    #[test]
    fn npy_header_is_aligned_and_parsable() {
        let b = npy_bytes(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
        assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert!(
            header.contains("'descr': '<f4'") && header.contains("'shape': (2, 3)"),
            "{header}"
        );
        assert!(header.ends_with('\n'));
        assert_eq!(b.len(), 10 + hlen + 24);
        assert_eq!(
            f32::from_le_bytes(b[10 + hlen + 4..10 + hlen + 8].try_into().unwrap()),
            2.0
        );
        let one = npy_bytes(&[7i64], &[1]).unwrap();
        assert!(std::str::from_utf8(&one[10..]).unwrap().contains("'shape': (1,)"));
        assert!(npy_bytes(&[1.0f64], &[2]).is_err());
    }

    #[test]
    fn safetensors_file_parses_back() {
        let arrays = vec![
            Array::new("a/x", &[1.5f32, -2.0, 3.25], &[3], "i", "x").unwrap(),
            Array::new("b", &[7i64, -8, 9, 10], &[2, 2], "i, j", "b").unwrap(),
            Array::new("c/empty", &[] as &[f64], &[0], "i", "nothing").unwrap(),
            Array::new("d", &[std::f64::consts::PI], &[1], "i", "pi").unwrap(),
        ];
        let path = std::env::temp_dir().join(format!("gensplit-st-{}.safetensors", std::process::id()));
        write_safetensors(&path, &arrays, &[("format", "test")]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!((8 + n) % 8, 0);
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        assert_eq!(header["__metadata__"]["format"], "test");
        let data = &bytes[8 + n..];
        let mut end = 0;
        for a in &arrays {
            let h = &header[&a.name];
            assert_eq!(h["dtype"], a.dtype);
            assert_eq!(h["shape"], json!(a.shape));
            let (b, e) = (
                h["data_offsets"][0].as_u64().unwrap() as usize,
                h["data_offsets"][1].as_u64().unwrap() as usize,
            );
            assert_eq!(b, end, "{}: contiguous", a.name);
            assert_eq!(&data[b..e], a.data.as_slice());
            end = e;
        }
        assert_eq!(end, data.len());
        assert_eq!(f32::from_le_bytes(data[4..8].try_into().unwrap()), -2.0);
        assert_eq!(i64::from_le_bytes(data[12 + 8..12 + 16].try_into().unwrap()), -8);
        assert_eq!(
            f64::from_le_bytes(data[data.len() - 8..].try_into().unwrap()),
            std::f64::consts::PI
        );
        // names must be unique
        let dup = [arrays[0].clone(), arrays[0].clone()];
        assert!(safetensors_header(&dup, &[]).is_err());
    }
}

mod pipeline {
    use std::collections::BTreeMap;
    use xtask::config::ReproConfig;
    use xtask::pipeline::*;

    /// Every planned stage is on exactly one track (or is `data`, which runs
    /// before both), so the look ahead over [`CNN_TRACK`] sees the whole CNN
    /// track, and no stage of one track reads one of the other's.
    #[test]
    fn the_tracks_partition_the_plan() {
        let modadd = [
            "train_modadd",
            "hessian_modadd",
            "train_modadd_seed2",
            "sphere_modadd",
            "sphere_modadd_seed2",
        ];
        for cfg in [ReproConfig::full(), ReproConfig::quick()] {
            let planned = plan(&cfg, &BTreeMap::new()).unwrap();
            let mut names: Vec<&str> = planned.iter().map(|s| s.name.as_str()).collect();
            names.sort_unstable();
            let mut tracks: Vec<&str> = ["data"].iter().chain(CNN_TRACK).chain(&modadd).copied().collect();
            tracks.sort_unstable();
            assert_eq!(names, tracks);
            for s in &planned {
                let on = |t: &[&str], n: &str| t.contains(&n);
                for i in &s.inputs {
                    assert!(
                        i == "data" || on(CNN_TRACK, &s.name) == on(CNN_TRACK, i),
                        "`{}` reads `{i}` across tracks",
                        s.name
                    );
                }
            }
        }
    }
}

mod split {
    use gensplit_data::ImageSet;
    use xtask::split::*;

    /// Split bounds come from the user's config: an overflowing `lo + n`
    /// is an error naming the split, not an arithmetic-overflow panic.
    #[test]
    fn ranges_that_do_not_fit_are_errors_naming_the_split() {
        let set = ImageSet::new(vec![0.0; 2 * 784], vec![1, 2]).unwrap();
        let e = range(&set, usize::MAX, 2, "steer", "the held-out split").unwrap_err();
        assert!(e.to_string().contains("steer config: the held-out split"), "{e}");
        assert!(range(&set, 1, 2, "steer", "x").is_err());
        let e = range(&set, 0, 0, "sphere_cnn", "the scoring set").unwrap_err();
        assert!(e.to_string().contains("sphere_cnn config: the scoring set"), "{e}");
        assert_eq!(range(&set, 1, 1, "steer", "x").unwrap().labels, vec![2]);
        assert_eq!(range(&set, 0, 2, "steer", "x").unwrap().labels, vec![1, 2]);
    }
}
