//! The model artifact: one self-checking, versioned file holding a [`Model`].
//!
//! # Format (all integers little-endian)
//! ```text
//! 0   magic  b"MOVREK\0\x01"                      8 bytes
//! 8   format version (u32) = 3, section count (u32)
//! 16  metadata length in bytes (u64)
//! 24  metadata JSON, zero-padded to a multiple of 8
//! ..  section table: count × { id u32, element size u32, offset u64, length in bytes u64 }
//! ..  sections, each starting at an 8-byte-aligned offset, zero-padded to 8
//! end SHA-256 of every byte before it (32 bytes)
//! ```
//! Version 2 added the learned-weight sections (EASE^R weight rows, ALS movie and user
//! factors); they are empty for the other algorithms. Version 3 added the precomputed
//! per-user lists (empty for `user-knn`). A version-2 file is still read, as a model with
//! nothing precomputed (its metadata has no `precomputed_list_len`, which reads as 0, so it
//! ranks as it always did); a version-1 file is refused with its version named (retrain it).
//!
//! Loading reads the file with one read into a `u64` buffer (so every section is 8-aligned),
//! checks magic, version and section bounds, and hashes the bytes exactly once: with an
//! expected whole-file digest (what the operator passes in `MOVREK_MODEL_SHA256`) that digest
//! is the check — a match means the bytes are exactly the ones written, so the trailing
//! checksum would add nothing; without one, the trailing checksum is verified instead. Each
//! section is then copied once into its array (`bytemuck`, a memcpy, no per-element parsing)
//! and the model's invariants are validated, so a crafted file cannot make serving panic.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::model::{Csr, Learned, Lists, Model, ModelMetadata};

#[cfg(target_endian = "big")]
compile_error!(
    "the artifact format is little-endian and loaded by casting; big-endian hosts are not supported"
);

/// First 8 bytes of every artifact.
pub const MAGIC: [u8; 8] = *b"MOVREK\0\x01";
/// The format version this build writes (and the newest it reads).
pub const FORMAT_VERSION: u32 = 3;
/// The oldest format version this build reads.
pub const OLDEST_FORMAT_VERSION: u32 = 2;
/// Sections of a version-2 file: every section but the precomputed lists.
const SECTIONS_V2: usize = 28;
const HEADER_LEN: usize = 24;
const TABLE_ENTRY_LEN: usize = 24;
const CHECKSUM_LEN: usize = 32;

/// Why an artifact was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// Reading or writing the file failed.
    #[error("artifact I/O on {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with the movrek magic bytes.
    #[error("not a movrek model artifact (bad magic bytes)")]
    BadMagic,
    /// The format version is not one this build reads.
    #[error(
        "unsupported artifact format version {found} (this build reads {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})"
    )]
    UnsupportedVersion {
        /// Version found in the file.
        found: u32,
    },
    /// The file ends before its declared content.
    #[error("artifact truncated: {0}")]
    Truncated(String),
    /// The trailing SHA-256 does not match the content.
    #[error("artifact checksum mismatch: the file is corrupted")]
    ChecksumMismatch,
    /// The whole-file SHA-256 differs from the expected one.
    #[error("artifact digest mismatch: expected sha256 {expected}, file has {actual}")]
    DigestMismatch {
        /// Expected hex digest.
        expected: String,
        /// Actual hex digest.
        actual: String,
    },
    /// Structurally invalid content behind a valid checksum (or unreadable metadata).
    #[error("corrupt artifact: {0}")]
    Corrupt(String),
}

/// Section ids, in file order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
enum Id {
    Users = 1,
    Movies,
    RatingOffsets,
    RatingItems,
    RatingValues,
    WatchedOffsets,
    WatchedItems,
    NeighbourOffsets,
    NeighbourUsers,
    NeighbourSims,
    ContribOffsets,
    ContribItems,
    ContribWeights,
    UserBias,
    MovieBias,
    MoviePrior,
    UserFilterAdult,
    UserColdList,
    MovieAdult,
    PopularityOrder,
    ColdOffsets,
    ColdItems,
    EaseOffsets,
    EaseItems,
    EaseWeights,
    FactorMovies,
    MovieFactors,
    UserFactors,
    PrecomputedOffsets,
    PrecomputedItems,
}

const SECTION_IDS: [Id; 30] = [
    Id::Users,
    Id::Movies,
    Id::RatingOffsets,
    Id::RatingItems,
    Id::RatingValues,
    Id::WatchedOffsets,
    Id::WatchedItems,
    Id::NeighbourOffsets,
    Id::NeighbourUsers,
    Id::NeighbourSims,
    Id::ContribOffsets,
    Id::ContribItems,
    Id::ContribWeights,
    Id::UserBias,
    Id::MovieBias,
    Id::MoviePrior,
    Id::UserFilterAdult,
    Id::UserColdList,
    Id::MovieAdult,
    Id::PopularityOrder,
    Id::ColdOffsets,
    Id::ColdItems,
    Id::EaseOffsets,
    Id::EaseItems,
    Id::EaseWeights,
    Id::FactorMovies,
    Id::MovieFactors,
    Id::UserFactors,
    Id::PrecomputedOffsets,
    Id::PrecomputedItems,
];

/// A section's bytes and element size, borrowed from a model.
fn sections(m: &Model) -> Vec<(Id, u32, &[u8])> {
    use bytemuck::cast_slice as b;
    SECTION_IDS
        .iter()
        .map(|&id| {
            let (size, bytes): (u32, &[u8]) = match id {
                Id::Users => (4, b(&m.users)),
                Id::Movies => (4, b(&m.movies)),
                Id::RatingOffsets => (4, b(&m.ratings.offsets)),
                Id::RatingItems => (4, b(&m.ratings.cols)),
                Id::RatingValues => (4, b(&m.ratings.vals)),
                Id::WatchedOffsets => (4, b(&m.watched.offsets)),
                Id::WatchedItems => (4, b(&m.watched.items)),
                Id::NeighbourOffsets => (4, b(&m.neighbours.offsets)),
                Id::NeighbourUsers => (4, b(&m.neighbours.cols)),
                Id::NeighbourSims => (4, b(&m.neighbours.vals)),
                Id::ContribOffsets => (4, b(&m.contributions.offsets)),
                Id::ContribItems => (4, b(&m.contributions.cols)),
                Id::ContribWeights => (4, b(&m.contributions.vals)),
                Id::UserBias => (4, b(&m.user_bias)),
                Id::MovieBias => (4, b(&m.movie_bias)),
                Id::MoviePrior => (4, b(&m.movie_prior)),
                Id::UserFilterAdult => (1, &m.user_filter_adult[..]),
                Id::UserColdList => (4, b(&m.user_cold_list)),
                Id::MovieAdult => (1, &m.movie_adult[..]),
                Id::PopularityOrder => (4, b(&m.popularity_order)),
                Id::ColdOffsets => (4, b(&m.cold_lists.offsets)),
                Id::ColdItems => (4, b(&m.cold_lists.items)),
                Id::EaseOffsets => (4, b(&m.learned.item_weights.offsets)),
                Id::EaseItems => (4, b(&m.learned.item_weights.cols)),
                Id::EaseWeights => (4, b(&m.learned.item_weights.vals)),
                Id::FactorMovies => (4, b(&m.learned.factor_movies)),
                Id::MovieFactors => (4, b(&m.learned.movie_factors)),
                Id::UserFactors => (4, b(&m.learned.user_factors)),
                Id::PrecomputedOffsets => (4, b(&m.precomputed.offsets)),
                Id::PrecomputedItems => (4, b(&m.precomputed.items)),
            };
            (id, size, bytes)
        })
        .collect()
}

fn pad8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Serialises `model` into the artifact format.
pub fn to_bytes(model: &Model) -> Vec<u8> {
    encode(model, FORMAT_VERSION)
}

/// Serialises `model` as format `version` writes it (version 2: without the sections added
/// since; tests write one to check that it is still read).
fn encode(model: &Model, version: u32) -> Vec<u8> {
    let meta = serde_json::to_vec(&model.meta).expect("model metadata always serialises to JSON");
    let mut secs = sections(model);
    if version == 2 {
        secs.truncate(SECTIONS_V2);
    }
    let table_start = HEADER_LEN + pad8(meta.len());
    let mut offset = table_start + secs.len() * TABLE_ENTRY_LEN;
    let mut table = Vec::with_capacity(secs.len() * TABLE_ENTRY_LEN);
    for (id, size, bytes) in &secs {
        table.extend_from_slice(&(*id as u32).to_le_bytes());
        table.extend_from_slice(&size.to_le_bytes());
        table.extend_from_slice(&(offset as u64).to_le_bytes());
        table.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        offset += pad8(bytes.len());
    }
    let mut out = Vec::with_capacity(offset + CHECKSUM_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(secs.len() as u32).to_le_bytes());
    out.extend_from_slice(&(meta.len() as u64).to_le_bytes());
    out.extend_from_slice(&meta);
    out.resize(table_start, 0);
    out.extend_from_slice(&table);
    for (_, _, bytes) in &secs {
        out.extend_from_slice(bytes);
        out.resize(pad8(out.len()), 0);
    }
    let checksum = Sha256::digest(&out);
    out.extend_from_slice(&checksum);
    out
}

/// Writes `model` to `path` (through a temporary file renamed into place) and returns the
/// whole file's SHA-256, hex — the value to put in `spec.model.sha256`.
pub fn write(model: &Model, path: &Path) -> Result<String, ArtifactError> {
    let bytes = to_bytes(model);
    let io = |source| ArtifactError::Io {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("movrek.tmp");
    std::fs::write(&tmp, &bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Reads and verifies the artifact at `path`; with `expected_sha256`, the whole file's digest
/// must match it (case-insensitive hex).
pub fn read(path: &Path, expected_sha256: Option<&str>) -> Result<Model, ArtifactError> {
    let io = |source| ArtifactError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = usize::try_from(file.metadata().map_err(io)?.len())
        .map_err(|_| ArtifactError::Corrupt("file too large for this platform".into()))?;
    // `vec![0; n]` of this size is fresh zero pages from the OS (no memset); the read fills
    // them. `read_exact` is one `read(2)` for files under 2 GiB.
    let mut buf = vec![0_u64; len.div_ceil(8)];
    let bytes = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut buf)[..len];
    file.read_exact(bytes).map_err(io)?;
    // A file that grew after `metadata` would be read short; refuse rather than half-load.
    if file.read(&mut [0_u8; 1]).map_err(io)? != 0 {
        return Err(ArtifactError::Corrupt(
            "the file changed size while it was read".into(),
        ));
    }
    decode(bytes, expected_sha256)
}

/// Verifies and decodes an artifact held in memory (see [`read`]). The bytes need no
/// particular alignment: sections are copied out with unaligned-safe copies.
#[allow(clippy::needless_pass_by_value)] // owned by contract: callers hand over a download body
pub fn from_bytes(bytes: Vec<u8>, expected_sha256: Option<&str>) -> Result<Model, ArtifactError> {
    decode(&bytes, expected_sha256)
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// One section-table row: id, element size, byte offset, byte length.
type Entry = (u32, u32, usize, usize);

/// Checks header, digest, bounds and checksum; returns the metadata and the section table.
fn verify(
    bytes: &[u8],
    expected_sha256: Option<&str>,
) -> Result<(ModelMetadata, Vec<Entry>), ArtifactError> {
    let len = bytes.len();
    if len < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        return Err(if len < MAGIC.len() && MAGIC.starts_with(bytes) {
            ArtifactError::Truncated(format!("{len} bytes, shorter than the header"))
        } else {
            ArtifactError::BadMagic
        });
    }
    if len < HEADER_LEN + CHECKSUM_LEN {
        return Err(ArtifactError::Truncated(format!(
            "{len} bytes, shorter than the header"
        )));
    }
    let version = read_u32(bytes, 8);
    let sections = match version {
        2 => SECTIONS_V2,
        FORMAT_VERSION => SECTION_IDS.len(),
        found => return Err(ArtifactError::UnsupportedVersion { found }),
    };
    // The one hash of the load. A whole-file digest that matches the expected one proves the
    // bytes are exactly those written (checksum included), so the trailing checksum is only
    // computed when no digest is expected.
    if let Some(expected) = expected_sha256 {
        let actual = hex::encode(Sha256::digest(bytes));
        if !actual.eq_ignore_ascii_case(expected.trim()) {
            return Err(ArtifactError::DigestMismatch {
                expected: expected.to_owned(),
                actual,
            });
        }
    }
    let count = read_u32(bytes, 12) as usize;
    let meta_len = usize::try_from(read_u64(bytes, 16)).unwrap_or(usize::MAX);
    let body_end = len - CHECKSUM_LEN;
    let table_start = HEADER_LEN.saturating_add(pad8(meta_len.min(usize::MAX - 8)));
    let table_end = count
        .checked_mul(TABLE_ENTRY_LEN)
        .and_then(|t| t.checked_add(table_start))
        .unwrap_or(usize::MAX);
    if table_end > body_end {
        return Err(ArtifactError::Truncated(format!(
            "metadata and section table need {table_end} bytes, the body has {body_end}"
        )));
    }
    let mut table = Vec::with_capacity(count);
    for i in 0..count {
        let at = table_start + i * TABLE_ENTRY_LEN;
        let id = read_u32(bytes, at);
        let size = read_u32(bytes, at + 4);
        let offset = usize::try_from(read_u64(bytes, at + 8)).unwrap_or(usize::MAX);
        let length = usize::try_from(read_u64(bytes, at + 16)).unwrap_or(usize::MAX);
        if offset.checked_add(length).is_none_or(|end| end > body_end) {
            return Err(ArtifactError::Truncated(format!(
                "section {id} spans {offset}+{length}, the body has {body_end} bytes"
            )));
        }
        table.push((id, size, offset, length));
    }
    if expected_sha256.is_none()
        && Sha256::digest(&bytes[..body_end]).as_slice() != &bytes[body_end..]
    {
        return Err(ArtifactError::ChecksumMismatch);
    }
    let meta: ModelMetadata = serde_json::from_slice(&bytes[HEADER_LEN..HEADER_LEN + meta_len])
        .map_err(|e| ArtifactError::Corrupt(format!("metadata JSON: {e}")))?;
    if count != sections {
        return Err(ArtifactError::Corrupt(format!(
            "{count} sections, format {version} has {sections}"
        )));
    }
    Ok((meta, table))
}

fn decode(bytes: &[u8], expected_sha256: Option<&str>) -> Result<Model, ArtifactError> {
    let (meta, table) = verify(bytes, expected_sha256)?;
    let words = |pos: usize| -> Result<&[u8], ArtifactError> {
        let (id, size, offset, length) = table[pos];
        let want = SECTION_IDS[pos];
        let want_size = if matches!(want, Id::UserFilterAdult | Id::MovieAdult) {
            1
        } else {
            4
        };
        if id != want as u32 || size != want_size {
            return Err(ArtifactError::Corrupt(format!(
                "section {pos} is id {id} size {size}, expected id {} size {want_size}",
                want as u32
            )));
        }
        if offset % 8 != 0 || length % want_size as usize != 0 {
            return Err(ArtifactError::Corrupt(format!(
                "section {id} is misaligned"
            )));
        }
        Ok(&bytes[offset..offset + length])
    };
    // One copy per section into its own typed array; `pod_collect_to_vec` copies bytes, so it
    // works whether or not the source is 4-aligned (a download body may not be).
    let u32s = |pos: usize| -> Result<Vec<u32>, ArtifactError> {
        Ok(bytemuck::allocation::pod_collect_to_vec(words(pos)?))
    };
    let f32s = |pos: usize| -> Result<Vec<f32>, ArtifactError> {
        Ok(bytemuck::allocation::pod_collect_to_vec(words(pos)?))
    };
    let u8s = |pos: usize| -> Result<Vec<u8>, ArtifactError> { Ok(words(pos)?.to_vec()) };
    // A section the file's version does not have: empty.
    let newer_u32s = |pos: usize| -> Result<Vec<u32>, ArtifactError> {
        if pos < table.len() {
            u32s(pos)
        } else {
            Ok(Vec::new())
        }
    };
    let model = Model {
        meta,
        users: u32s(0)?,
        movies: u32s(1)?,
        ratings: Csr {
            offsets: u32s(2)?,
            cols: u32s(3)?,
            vals: f32s(4)?,
        },
        watched: Lists {
            offsets: u32s(5)?,
            items: u32s(6)?,
        },
        neighbours: Csr {
            offsets: u32s(7)?,
            cols: u32s(8)?,
            vals: f32s(9)?,
        },
        contributions: Csr {
            offsets: u32s(10)?,
            cols: u32s(11)?,
            vals: f32s(12)?,
        },
        user_bias: f32s(13)?,
        movie_bias: f32s(14)?,
        movie_prior: f32s(15)?,
        user_filter_adult: u8s(16)?,
        user_cold_list: u32s(17)?,
        movie_adult: u8s(18)?,
        popularity_order: u32s(19)?,
        cold_lists: Lists {
            offsets: u32s(20)?,
            items: u32s(21)?,
        },
        learned: Learned {
            item_weights: Csr {
                offsets: u32s(22)?,
                cols: u32s(23)?,
                vals: f32s(24)?,
            },
            factor_movies: u32s(25)?,
            movie_factors: f32s(26)?,
            user_factors: f32s(27)?,
        },
        precomputed: Lists {
            offsets: newer_u32s(28)?,
            items: newer_u32s(29)?,
        },
    };
    model.validate().map_err(ArtifactError::Corrupt)?;
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures;
    use crate::model::{AlsHyper, learned::fit_als};
    use crate::train::{TrainParams, train};

    /// An EASE model that also carries ALS factors, so every section is non-empty.
    fn model() -> Model {
        let params = TrainParams {
            cold_start_min_group_users: 2,
            ..TrainParams::default()
        };
        let mut model = train(&fixtures::dataset(), &params, "v1", "abc").unwrap();
        let hyper = AlsHyper {
            factors: 3,
            reg: 0.1,
            alpha: 2.0,
        };
        let als = fit_als(
            &model.ratings,
            model.movies.len(),
            100,
            &hyper,
            2,
            1,
            |_, _| {},
        );
        model.learned.factor_movies = als.factor_movies;
        model.learned.movie_factors = als.movie_factors;
        model.learned.user_factors = als.user_factors;
        model.validate().unwrap();
        model
    }

    #[test]
    fn round_trip_through_a_file_keeps_the_model_and_reports_its_digest() {
        let model = model();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.movrek");
        let digest = write(&model, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(digest, hex::encode(Sha256::digest(&bytes)));
        assert_eq!(read(&path, None).unwrap(), model);
        assert_eq!(read(&path, Some(&digest.to_uppercase())).unwrap(), model);
        assert_eq!(from_bytes(bytes, Some(&digest)).unwrap(), model);
        for user in [1, 7, 9, 999] {
            let loaded = read(&path, None).unwrap();
            assert_eq!(loaded.recommend(user, 20), model.recommend(user, 20));
        }
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = to_bytes(&model());
        for cut in (0..bytes.len())
            .step_by(7)
            .chain([bytes.len() - 1, bytes.len() - 32])
        {
            let err = from_bytes(bytes[..cut].to_vec(), None).unwrap_err();
            assert!(
                matches!(
                    err,
                    ArtifactError::Truncated(_)
                        | ArtifactError::ChecksumMismatch
                        | ArtifactError::BadMagic
                ),
                "cut at {cut}: {err}"
            );
        }
    }

    #[test]
    fn a_flipped_byte_anywhere_is_refused() {
        let bytes = to_bytes(&model());
        // One flip inside every section, the header, the metadata, the table and the checksum.
        let mut positions: Vec<usize> = (0..bytes.len()).step_by(13).collect();
        let count = read_u32(&bytes, 12) as usize;
        let table_start = HEADER_LEN + pad8(read_u64(&bytes, 16) as usize);
        for i in 0..count {
            let at = table_start + i * TABLE_ENTRY_LEN;
            let (offset, length) = (
                read_u64(&bytes, at + 8) as usize,
                read_u64(&bytes, at + 16) as usize,
            );
            if length > 0 {
                positions.push(offset + length / 2);
            }
        }
        positions.push(bytes.len() - 1);
        for pos in positions {
            let mut bad = bytes.clone();
            bad[pos] ^= 0x20;
            assert!(from_bytes(bad, None).is_err(), "flip at {pos} accepted");
        }
    }

    /// Byte positions in the middle of every non-empty section of `bytes`.
    fn section_middles(bytes: &[u8]) -> Vec<usize> {
        let count = read_u32(bytes, 12) as usize;
        let table_start = HEADER_LEN + pad8(read_u64(bytes, 16) as usize);
        (0..count)
            .filter_map(|i| {
                let at = table_start + i * TABLE_ENTRY_LEN;
                let (offset, length) = (
                    read_u64(bytes, at + 8) as usize,
                    read_u64(bytes, at + 16) as usize,
                );
                (length > 0).then_some(offset + length / 2)
            })
            .collect()
    }

    #[test]
    fn a_flipped_payload_byte_fails_the_trailing_checksum_without_an_expected_digest() {
        // The load hashes once: with no expected digest that hash must be the trailing
        // checksum, so a flip that leaves the structure valid is still caught — from a file
        // and from memory — and with the original digest expected it is a digest mismatch.
        let bytes = to_bytes(&model());
        let digest = hex::encode(Sha256::digest(&bytes));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flipped.movrek");
        let middles = section_middles(&bytes);
        assert_eq!(
            middles.len(),
            SECTION_IDS.len(),
            "every section is non-empty"
        );
        for pos in middles {
            let mut bad = bytes.clone();
            bad[pos] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            let err = read(&path, None).unwrap_err();
            assert!(
                matches!(err, ArtifactError::ChecksumMismatch),
                "flip at {pos}: {err}"
            );
            let err = from_bytes(bad.clone(), None).unwrap_err();
            assert!(
                matches!(err, ArtifactError::ChecksumMismatch),
                "flip at {pos}: {err}"
            );
            let err = read(&path, Some(&digest)).unwrap_err();
            assert!(
                matches!(err, ArtifactError::DigestMismatch { ref actual, .. } if *actual != digest),
                "flip at {pos}: {err}"
            );
        }
    }

    #[test]
    fn unaligned_bytes_decode_to_the_same_model() {
        // A download body carries no alignment promise: decode from an odd address.
        let model = model();
        let bytes = to_bytes(&model);
        let mut shifted = Vec::with_capacity(bytes.len() + 1);
        shifted.push(0_u8);
        shifted.extend_from_slice(&bytes);
        let unaligned = &shifted[1..];
        assert_ne!(unaligned.as_ptr().align_offset(4), 0);
        assert_eq!(decode(unaligned, None).unwrap(), model);
    }

    #[test]
    fn wrong_digest_magic_or_version_get_their_own_errors() {
        let bytes = to_bytes(&model());
        let err = from_bytes(bytes.clone(), Some(&"0".repeat(64))).unwrap_err();
        assert!(
            matches!(err, ArtifactError::DigestMismatch { ref expected, .. } if *expected == "0".repeat(64))
        );
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(matches!(
            from_bytes(bad, None),
            Err(ArtifactError::BadMagic)
        ));
        for older_or_newer in [1_u32, FORMAT_VERSION + 1] {
            let mut bad = bytes.clone();
            bad[8..12].copy_from_slice(&older_or_newer.to_le_bytes());
            assert!(matches!(
                from_bytes(bad, None),
                Err(ArtifactError::UnsupportedVersion { found }) if found == older_or_newer
            ));
        }
        assert!(matches!(
            from_bytes(Vec::new(), None),
            Err(ArtifactError::Truncated(_))
        ));
        let missing = std::path::Path::new("/nonexistent/m.movrek");
        assert!(matches!(read(missing, None), Err(ArtifactError::Io { .. })));
    }

    #[test]
    fn invalid_content_behind_a_valid_checksum_is_corrupt_not_a_panic() {
        let mut model = model();
        model.neighbours.cols[0] = u32::MAX;
        let err = from_bytes(to_bytes(&model), None).unwrap_err();
        assert!(
            matches!(err, ArtifactError::Corrupt(ref why) if why.contains("neighbours")),
            "{err}"
        );
    }

    /// A section name and a way to corrupt it.
    type Corruption = (&'static str, fn(&mut Model));

    #[test]
    fn corrupt_learned_sections_are_refused_with_their_name() {
        let good = model();
        let cases: [Corruption; 4] = [
            ("item_weights", |m| {
                m.learned.item_weights.cols[0] = u32::MAX;
            }),
            ("item_weights", |m| {
                m.learned.item_weights.vals[0] = f32::NAN;
            }),
            ("user_factors", |m| {
                m.learned.user_factors.pop();
            }),
            ("factor_movies", |m| m.learned.factor_movies[0] = u32::MAX),
        ];
        for (name, corrupt) in cases {
            let mut bad = good.clone();
            corrupt(&mut bad);
            let err = from_bytes(to_bytes(&bad), None).unwrap_err();
            assert!(
                matches!(err, ArtifactError::Corrupt(ref why) if why.contains(name) || why.contains("factor")),
                "{name}: {err}"
            );
        }
        let mut bad = good;
        bad.learned.movie_factors[0] = f32::INFINITY;
        assert!(matches!(
            from_bytes(to_bytes(&bad), None),
            Err(ArtifactError::Corrupt(_))
        ));
    }

    #[test]
    fn corrupt_precomputed_lists_are_refused_with_their_name() {
        let good = model();
        assert!(
            !good.precomputed.items.is_empty(),
            "the fixture precomputes lists"
        );
        let cases: [Corruption; 3] = [
            ("precomputed", |m| m.precomputed.items[0] = u32::MAX),
            ("precomputed", |m| {
                m.precomputed.offsets.pop();
            }),
            ("precomputed_list_len", |m| {
                m.meta.params.precomputed_list_len = 1;
            }),
        ];
        for (name, corrupt) in cases {
            let mut bad = good.clone();
            corrupt(&mut bad);
            let err = from_bytes(to_bytes(&bad), None).unwrap_err();
            assert!(
                matches!(err, ArtifactError::Corrupt(ref why) if why.contains(name)),
                "{name}: {err}"
            );
        }
    }

    /// A version-2 file (written before the precomputed lists) still loads: nothing
    /// precomputed, and its metadata without `precomputed_list_len` reads as 0, so it ranks
    /// within its request budget as it did.
    #[test]
    fn a_version_2_file_loads_with_nothing_precomputed() {
        let mut old = model();
        old.precomputed = Lists::default();
        let mut meta = serde_json::to_value(&old.meta).unwrap();
        meta["params"]
            .as_object_mut()
            .unwrap()
            .remove("precomputed_list_len")
            .expect("the field is written");
        old.meta = serde_json::from_value(meta).unwrap();
        assert_eq!(old.meta.params.precomputed_list_len, 0);
        let bytes = encode(&old, 2);
        assert_eq!(read_u32(&bytes, 8), 2);
        let loaded = from_bytes(bytes, None).unwrap();
        assert_eq!(loaded.precomputed.rows(), 0);
        assert_eq!(loaded, old);
        // Two sections short of version 3: a version-3 header over it is refused.
        let mut relabelled = encode(&old, 2);
        relabelled[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        let body_end = relabelled.len() - CHECKSUM_LEN;
        let checksum = Sha256::digest(&relabelled[..body_end]);
        relabelled[body_end..].copy_from_slice(&checksum);
        assert!(matches!(
            from_bytes(relabelled, None),
            Err(ArtifactError::Corrupt(ref why)) if why.contains("sections")
        ));
    }
}
