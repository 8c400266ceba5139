//! A simulated Affine public API (`/api/v1/rank/current`, `/api/v1/scores/latest`,
//! `/api/v1/miners/uid/{uid}`), serving the fixtures under `fixtures/affine/` until a test
//! changes them: crown another champion, answer errors, or answer garbage — on every route,
//! or on `/rank/current` alone (a 404 there is a deployment from before the endpoint).

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// `GET /scores/latest`.
pub const SCORES: &str = include_str!("../fixtures/affine/scores_latest.json");
/// `GET /miners/uid/41`.
pub const MINER_41: &str = include_str!("../fixtures/affine/miner_uid.json");
/// `GET /rank/current`.
pub const RANK_CURRENT: &str = include_str!("../fixtures/affine/rank_current.json");

/// The hotkey of the miners [`AffineSim::crown`] and [`AffineSim::crown_rank`] add.
pub const CROWNED_HOTKEY: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";

/// The block [`AffineSim::crown`] says a champion appeared at and was crowned at.
pub const CROWNED_BLOCK: u64 = 6_900_000;

/// How the simulated API answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AffineMode {
    /// The current scores and miners.
    #[default]
    Normal,
    /// This status with a small JSON error body, on every route.
    Status(u16),
    /// 200 with a body that is not the expected JSON.
    Garbage,
}

/// The simulated API's data; shared by the routes and the test that drives them.
#[derive(Debug)]
pub struct AffineSim {
    scores: RwLock<Value>,
    miners: RwLock<HashMap<u16, Value>>,
    rank: RwLock<Value>,
    mode: RwLock<AffineMode>,
    rank_mode: RwLock<AffineMode>,
    requests: AtomicU64,
    rank_requests: AtomicU64,
}

impl Default for AffineSim {
    fn default() -> Self {
        let scores: Value = serde_json::from_str(SCORES).unwrap_or(Value::Null);
        let mut miners = HashMap::new();
        // Every row of the fixture has a miner record; uid 41's is the fixture itself.
        if let Some(rows) = scores["scores"].as_array() {
            for r in rows {
                let Some(uid) = r["uid"].as_u64().and_then(|u| u16::try_from(u).ok()) else {
                    continue;
                };
                miners.insert(
                    uid,
                    json!({
                        "uid": uid, "hotkey": r["miner_hotkey"], "model": r["model"],
                        "revision": r["model_revision"], "is_valid": r["is_valid"],
                        "first_block": r["first_block"], "invalid_reason": r["invalid_reason"],
                    }),
                );
            }
        }
        if let Ok(m) = serde_json::from_str::<Value>(MINER_41) {
            miners.insert(41, m);
        }
        AffineSim {
            scores: RwLock::new(scores),
            miners: RwLock::new(miners),
            rank: RwLock::new(serde_json::from_str(RANK_CURRENT).unwrap_or(Value::Null)),
            mode: RwLock::new(AffineMode::Normal),
            rank_mode: RwLock::new(AffineMode::Normal),
            requests: AtomicU64::new(0),
            rank_requests: AtomicU64::new(0),
        }
    }
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AffineSim {
    /// Replaces the `/scores/latest` body.
    pub fn set_scores(&self, scores: Value) {
        *write(&self.scores) = scores;
    }

    /// Replaces (or adds) the `/miners/uid/{uid}` body.
    pub fn set_miner(&self, uid: u16, miner: Value) {
        write(&self.miners).insert(uid, miner);
    }

    /// Replaces the `/rank/current` body (any JSON, so tests can send wrong shapes).
    pub fn set_rank(&self, rank: Value) {
        *write(&self.rank) = rank;
    }

    /// The `/rank/current` body as it is now.
    pub fn rank(&self) -> Value {
        read(&self.rank).clone()
    }

    /// How every route answers from now on.
    pub fn set_mode(&self, mode: AffineMode) {
        *write(&self.mode) = mode;
    }

    /// How `/rank/current` answers while every route answers normally: `Status(404)` is a
    /// deployment without the endpoint, `Status(503)` its cold or expired cache.
    pub fn set_rank_mode(&self, mode: AffineMode) {
        *write(&self.rank_mode) = mode;
    }

    /// Requests served so far, on every route.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// `/rank/current` requests served so far; a poll of the gateway starts with one.
    pub fn rank_requests(&self) -> u64 {
        self.rank_requests.load(Ordering::Relaxed)
    }

    /// Makes `uid` the champion (`overall_score` 1.0, every other row 0.0), adding its row
    /// if absent, with a valid miner record of `model`@`revision` on `chute_slug` if given;
    /// `/rank/current` names it too (since [`CROWNED_BLOCK`]), first of the past champions,
    /// which share the weight equally.
    pub fn crown(&self, uid: u16, model: &str, revision: &str, chute_slug: Option<&str>) {
        self.crown_in_rank(uid, model, revision);
        {
            let mut scores = write(&self.scores);
            let rows = scores["scores"].as_array_mut();
            let Some(rows) = rows else { return };
            for r in rows.iter_mut() {
                r["overall_score"] = json!(0.0);
            }
            match rows.iter_mut().find(|r| r["uid"] == json!(uid)) {
                Some(r) => {
                    r["overall_score"] = json!(1.0);
                    r["model"] = json!(model);
                    r["model_revision"] = json!(revision);
                    r["is_valid"] = json!(true);
                }
                None => rows.push(json!({
                    "miner_hotkey": CROWNED_HOTKEY,
                    "uid": uid, "model_revision": revision, "model": model,
                    "first_block": CROWNED_BLOCK, "overall_score": 1.0, "average_score": 0.75,
                    "scores_by_env": {}, "total_samples": 10, "is_valid": true,
                    "invalid_reason": null, "challenge_status": "champion",
                    "termination_reason": null,
                })),
            }
        }
        let mut miner = json!({
            "uid": uid, "hotkey": CROWNED_HOTKEY,
            "model": model, "revision": revision, "is_valid": true,
            "challenge_status": "champion", "first_block": CROWNED_BLOCK,
        });
        if let Some(slug) = chute_slug {
            miner["chute_slug"] = json!(slug);
        }
        self.set_miner(uid, miner);
    }

    /// The `/rank/current` half of [`AffineSim::crown`].
    fn crown_in_rank(&self, uid: u16, model: &str, revision: &str) {
        self.crown_rank(uid, model, revision, CROWNED_BLOCK);
    }

    /// Changes only `/rank/current` (the scores and miner records stay): `uid` (hotkey
    /// [`CROWNED_HOTKEY`]) becomes `window.champion` with `model`@`revision` since
    /// `since_block`, and is listed first in `past_champions`, then the champion it replaces,
    /// then the others; they share the weight equally. What a gateway reading only the rank
    /// sees when Affine crowns a challenger.
    pub fn crown_rank(&self, uid: u16, model: &str, revision: &str, since_block: u64) {
        let mut rank = write(&self.rank);
        let Some(window) = rank.get_mut("window").and_then(Value::as_object_mut) else {
            return;
        };
        let old = window.insert(
            "champion".to_owned(),
            json!({
                "uid": uid, "hotkey": CROWNED_HOTKEY, "revision": revision, "model": model,
                "model_type": "qwen3", "since_block": since_block,
            }),
        );
        let mut past: Vec<Value> = window
            .get("past_champions")
            .and_then(Value::as_array)
            .map(|p| {
                p.iter()
                    .filter(|c| c["uid"] != json!(uid))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if let Some(old) = old.filter(|o| o["uid"] != json!(uid))
            && !past.iter().any(|c| c["uid"] == old["uid"])
        {
            past.insert(
                0,
                json!({ "uid": old["uid"], "hotkey": old["hotkey"], "model": old["model"],
                        "revision": old["revision"] }),
            );
        }
        past.insert(
            0,
            json!({ "uid": uid, "hotkey": CROWNED_HOTKEY, "model": model, "revision": revision }),
        );
        let share = 1.0 / past.len() as f64;
        for c in &mut past {
            c["share"] = json!(share);
        }
        window.insert("past_champions".to_owned(), Value::Array(past));
    }

    fn answer(&self, ok: impl FnOnce() -> Option<Value>) -> Response {
        let mode = *read(&self.mode);
        self.answer_in(mode, ok)
    }

    fn answer_in(&self, mode: AffineMode, ok: impl FnOnce() -> Option<Value>) -> Response {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let (status, body) = match mode {
            AffineMode::Status(code) => (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                r#"{"detail":"simulated failure"}"#.to_owned(),
            ),
            AffineMode::Garbage => (
                StatusCode::OK,
                r#"{"scores": "<html>maintenance</html>", "uid": "x"#.to_owned(),
            ),
            AffineMode::Normal => match ok() {
                Some(v) => (StatusCode::OK, v.to_string()),
                None => (
                    StatusCode::NOT_FOUND,
                    r#"{"detail":"Miner not found"}"#.to_owned(),
                ),
            },
        };
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

pub(crate) async fn scores_latest(State(sim): State<std::sync::Arc<crate::SimState>>) -> Response {
    let a = sim.affine();
    a.answer(|| Some(read(&a.scores).clone()))
}

pub(crate) async fn rank_current(State(sim): State<std::sync::Arc<crate::SimState>>) -> Response {
    let a = sim.affine();
    a.rank_requests.fetch_add(1, Ordering::Relaxed);
    // A failure of the whole API wins over the endpoint's own switch.
    let mode = match *read(&a.mode) {
        AffineMode::Normal => *read(&a.rank_mode),
        failing => failing,
    };
    a.answer_in(mode, || Some(read(&a.rank).clone()))
}

pub(crate) async fn miner(
    State(sim): State<std::sync::Arc<crate::SimState>>,
    Path(uid): Path<String>,
) -> Response {
    let a = sim.affine();
    a.answer(|| {
        let uid = uid.parse::<u16>().ok()?;
        read(&a.miners).get(&uid).cloned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_parse_and_crowning_moves_the_champion() {
        let a = AffineSim::default();
        assert_eq!(read(&a.miners).len(), 3);
        a.crown(7, "runner/Affine-Reasoner-14B", "abc", None);
        let s = read(&a.scores).clone();
        let best = s["scores"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["overall_score"] == json!(1.0))
            .unwrap()
            .clone();
        assert_eq!(best["uid"], 7);
        assert_eq!(read(&a.miners)[&7]["revision"], "abc");
        let window = &a.rank()["window"];
        assert_eq!(window["champion"]["uid"], 7);
        assert_eq!(window["champion"]["revision"], "abc");
        assert_eq!(window["champion"]["since_block"], CROWNED_BLOCK);
        let past: Vec<&Value> = window["past_champions"]
            .as_array()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(past.len(), 2, "uid 7 is not listed twice");
        assert_eq!((&past[0]["uid"], &past[1]["uid"]), (&json!(7), &json!(41)));
        assert_eq!(past[1]["share"], 0.5);
    }

    #[test]
    fn crowning_in_the_rank_moves_the_old_champion_to_the_past() {
        let a = AffineSim::default();
        a.crown_rank(88, "someone/Challenger-32B", "0f0e", 6_905_000);
        a.crown_rank(9, "new/Model", "beef", 6_906_000);
        let window = &a.rank()["window"];
        assert_eq!(window["champion"]["uid"], 9);
        assert_eq!(window["champion"]["since_block"], 6_906_000);
        assert_eq!(window["champion"]["revision"], "beef");
        let uids: Vec<&Value> = window["past_champions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["uid"])
            .collect();
        assert_eq!(uids, [&json!(9), &json!(88), &json!(41), &json!(7)]);
        assert_eq!(
            window["past_champions"][1]["model"],
            "someone/Challenger-32B"
        );
        assert_eq!(window["past_champions"][3]["share"], 0.25);
        assert_eq!(read(&a.scores)["scores"][0]["uid"], 41, "scores untouched");
    }

    #[test]
    fn the_rank_fixture_names_uid_41() {
        let a = AffineSim::default();
        let window = &a.rank()["window"];
        assert_eq!(window["champion"]["uid"], 41);
        assert_eq!(window["champion"]["since_block"], 6_880_112);
        assert_eq!(window["past_champions"].as_array().unwrap().len(), 2);
    }
}
