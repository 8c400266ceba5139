//! Chain-aware accounts against the simulated chain (`chain-sim`): membership from the
//! metagraph (aggregates without admin records, gates, fail-closed staleness, endpoint
//! failover) and TAO deposits (exactly once across restarts, replicas and repeated delivery;
//! runtime upgrades; catch-up from an archive node; unattributed deposits; reconciliation).

mod common;

use std::time::Duration;

use affine_gateway::auth::jwt::Scope;
use affine_gateway::auth::ss58;
use affine_gateway::config::{ChainConfig, Config, PlanConfig, SubnetGate};
use affine_gateway::server::Running;
use chain_sim::{ChainSim, Listener, Role, SimNeuron};
use chutes_sim::SimConfig;
use common::*;
use sp_core::Pair as _;
use sp_core::sr25519;

const WAIT: Duration = Duration::from_secs(20);

fn pair(seed: &str) -> sr25519::Pair {
    sr25519::Pair::from_string(seed, None).expect("dev seed")
}

fn public(seed: &str) -> [u8; 32] {
    pair(seed).public().0
}

fn addr(seed: &str) -> String {
    ss58::encode42(&public(seed))
}

fn neuron(seed: &str, permit: bool, total_stake: u64) -> SimNeuron {
    SimNeuron {
        hotkey: public(seed),
        coldkey: public(&format!("{seed}//cold")),
        validator_permit: permit,
        alpha_stake: total_stake,
        tao_stake: 0,
        total_stake,
    }
}

/// A free plan with `rpm` requests per minute.
fn free_plan(rpm: u64) -> PlanConfig {
    PlanConfig {
        requests_per_minute: Some(rpm),
        tokens_per_minute: Some(10_000_000),
        tokens_per_day: Some(100_000_000),
        max_concurrent: Some(32),
        max_tokens: Some(4096),
        input_rao_per_mtok: Some(0),
        output_rao_per_mtok: Some(0),
        ..PlanConfig::default()
    }
}

/// Chain settings for tests: quick periods, no rate limit to speak of.
fn chain_config(endpoints: Vec<String>) -> ChainConfig {
    ChainConfig {
        endpoints,
        metagraph_secs: 1,
        max_age_secs: 3,
        requests_per_second: 1000,
        deposit_poll_secs: 1,
        request_timeout_ms: 2_000,
        ..ChainConfig::default()
    }
}

const BODY: &str = r#"{"input":"hi","max_tokens":16}"#;

async fn reason_as(h: &Harness, base: &str, account: &str) -> reqwest::Response {
    h.http
        .post(format!("{base}/v1/reason"))
        .bearer_auth(token(account, &[Scope::Reason], 600))
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await
        .expect("request sent")
}

async fn chain_status(h: &Harness, base: &str) -> serde_json::Value {
    get_json(h, &format!("{base}/admin/v1/chain"), &admin_token()).await
}

/// Waits until the gateway at `base` has a snapshot of `netuid` at or after `block`.
async fn synced(h: &Harness, base: &str, netuid: u16, block: u64) {
    eventually(WAIT, "the metagraph snapshot", || async {
        let s = chain_status(h, base).await;
        s["subnets"]
            .as_array()?
            .iter()
            .find(|x| x["netuid"] == netuid)
            .and_then(|x| x["block"].as_u64())
            .filter(|b| *b >= block)
    })
    .await;
}

async fn start(chain: &Listener, tweak: impl FnOnce(&mut Config)) -> Harness {
    let url = chain.url();
    Harness::start_with(SimConfig::default(), move |c| {
        use_redis(c);
        c.allow_unregistered = false;
        c.chain = Some(chain_config(vec![url]));
        tweak(c);
    })
    .await
}

#[tokio::test]
async fn hotkeys_of_a_mapped_subnet_share_its_aggregate_without_an_admin_record() {
    let sim = ChainSim::new();
    sim.set_subnet(12, vec![neuron("//M1", false, 5), neuron("//M2", false, 7)]);
    let head = sim.produce_blocks(3);
    let node = sim.serve(Role::Archive).await.expect("chain serves");
    let h = start(&node, |c| {
        c.plans.insert("subnet".into(), free_plan(100));
        c.plans.insert("sn12".into(), free_plan(3));
        c.subnets.insert("12".into(), "sn12".into());
    })
    .await;
    synced(&h, &h.gw.url(), 12, head - 2).await;

    // Not a member: unregistered callers are refused here.
    let outsider = reason_as(&h, &h.gw.url(), &addr("//Outsider")).await;
    expect_problem(outsider, 403, "unregistered_hotkey").await;

    // Two members, no account records: three requests between them, then the aggregate.
    for who in ["//M1", "//M2", "//M1"] {
        let res = reason_as(&h, &h.gw.url(), &addr(who)).await;
        assert_eq!(res.status(), 200, "{who}: {}", res.text().await.unwrap());
    }
    let res = reason_as(&h, &h.gw.url(), &addr("//M2")).await;
    assert_eq!(res.status(), 429, "the subnet's aggregate is spent");

    // The caller sees its membership; the operator sees the hotkey.
    let view: serde_json::Value = get_json(
        &h,
        &h.url("/v1/account"),
        &token(&addr("//M2"), &[Scope::Reason], 600),
    )
    .await;
    assert_eq!(view["netuid"], 12);
    assert_eq!(view["plan"], "subnet");
    assert_eq!(view["membership"][0]["netuid"], 12);
    assert_eq!(view["membership"][0]["total_stake_rao"], 7);
    assert_eq!(view["membership"][0]["coldkey"], addr("//M2//cold"));
    let hk: serde_json::Value = h
        .http
        .get(h.url(&format!("/admin/v1/chain/hotkeys/{}", addr("//M1"))))
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(hk["memberships"][0]["uid"], 0);
    assert_eq!(hk["memberships"][0]["validator_permit"], false);

    // An explicit record wins: M1 on its own plan, outside the subnet.
    let res = put_account(&h.http, &h.gw.url(), &addr("//M1"), r#"{"plan":"public"}"#).await;
    assert!(res.status().is_success());
    let view: serde_json::Value = get_json(
        &h,
        &h.url("/v1/account"),
        &token(&addr("//M1"), &[Scope::Reason], 600),
    )
    .await;
    assert_eq!(view["plan"], "public");
    assert!(view["netuid"].is_null());
}

#[tokio::test]
async fn a_gated_subnet_refuses_members_without_a_permit_and_fails_closed_when_stale() {
    let sim = ChainSim::new();
    sim.set_subnet(
        13,
        vec![
            neuron("//V", true, 2_000),
            neuron("//NoPermit", false, 9_000),
            neuron("//Poor", true, 10),
        ],
    );
    let head = sim.produce_blocks(3);
    let node = sim.serve(Role::Archive).await.expect("chain serves");
    let h = start(&node, |c| {
        c.plans.insert("subnet".into(), free_plan(100));
        c.subnets.insert("13".into(), "subnet".into());
        c.subnet_gates.insert(
            "13".into(),
            SubnetGate {
                validator_permit: true,
                min_stake_rao: Some(1_000),
                ..SubnetGate::default()
            },
        );
    })
    .await;
    synced(&h, &h.gw.url(), 13, head - 2).await;

    assert_eq!(reason_as(&h, &h.gw.url(), &addr("//V")).await.status(), 200);
    let p = expect_problem(
        reason_as(&h, &h.gw.url(), &addr("//NoPermit")).await,
        403,
        "membership_required",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("validator permit"));
    expect_problem(
        reason_as(&h, &h.gw.url(), &addr("//Poor")).await,
        403,
        "membership_required",
    )
    .await;

    // The chain goes away: once the snapshot is older than max_age (3 s), the member that
    // passed is refused rather than judged on old data.
    node.fail_next(u64::MAX, 503);
    let p = eventually(WAIT, "membership_unknown", || async {
        let res = reason_as(&h, &h.gw.url(), &addr("//V")).await;
        (res.status() == 403).then_some(res)
    })
    .await;
    expect_problem(p, 403, "membership_unknown").await;
    // The gauge follows within its one-second export.
    eventually(WAIT, "the age gauge past max_age", || async {
        metric(
            &h.http,
            &h.gw.url(),
            "agw_metagraph_age_seconds{netuid=\"13\"}",
        )
        .await
        .filter(|age| *age >= 3.0)
    })
    .await;
}

#[tokio::test]
async fn a_rate_limited_endpoint_fails_over_to_the_next() {
    let sim = ChainSim::new();
    sim.set_subnet(12, vec![neuron("//M1", false, 5)]);
    let head = sim.produce_blocks(3);
    let first = sim.serve(Role::Archive).await.unwrap();
    let second = sim.serve(Role::Archive).await.unwrap();
    first.fail_next(u64::MAX, 429);
    let (a, b) = (first.url(), second.url());
    let h = Harness::start_with(SimConfig::default(), move |c| {
        c.chain = Some(chain_config(vec![a, b]));
        c.plans.insert("subnet".into(), free_plan(100));
        c.subnets.insert("12".into(), "subnet".into());
    })
    .await;
    synced(&h, &h.gw.url(), 12, head - 2).await;
    assert!(first.total_requests() >= 1, "the first endpoint was tried");
    assert!(
        second.requests("state_call") >= 1,
        "the second one answered"
    );
    let s = chain_status(&h, &h.gw.url()).await;
    assert_eq!(s["endpoints"][0]["label"], "lite0");
    assert!(s["endpoints"][0]["failures"].as_u64().unwrap() >= 1);
    let rate_limited = metric(
        &h.http,
        &h.gw.url(),
        "agw_chain_rpc_requests_total{endpoint=\"lite0\",outcome=\"rate_limited\"}",
    )
    .await
    .unwrap_or(0.0);
    assert!(rate_limited >= 1.0);
}

/// Links `cold`'s coldkey to `account` (whose token is `bearer`) through the API.
async fn link(
    h: &Harness,
    base: &str,
    bearer: &str,
    account: &str,
    cold: &str,
    nonce: &str,
) -> reqwest::Response {
    let msg = format!(
        "affine-gateway:link-coldkey:{account}:{}:{nonce}",
        h.cfg.effective_hotkey()
    );
    let sig = pair(cold).sign(msg.as_bytes());
    h.http
        .post(format!("{base}/v1/account/coldkeys"))
        .bearer_auth(bearer)
        .json(&serde_json::json!({
            "coldkey": addr(cold),
            "nonce": nonce,
            "signature": format!("0x{}", hex::encode(sig.0)),
        }))
        .send()
        .await
        .unwrap()
}

async fn balance(h: &Harness, base: &str, account: &str) -> i64 {
    h.http
        .get(format!("{base}/admin/v1/accounts/{account}"))
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["balance_rao"]
        .as_i64()
        .unwrap()
}

async fn cursor(h: &Harness, base: &str) -> Option<u64> {
    chain_status(h, base).await["deposits"]["cursor"].as_u64()
}

fn deposit_config(c: &mut Config, endpoints: Vec<String>, archive: Vec<String>) {
    use_redis(c);
    let mut chain = chain_config(endpoints);
    chain.archive_endpoints = archive;
    chain.deposit_address = Some(addr("//Deposit"));
    c.chain = Some(chain);
}

/// `GET url` with `bearer`, as JSON.
async fn get_json(h: &Harness, url: &str, bearer: &str) -> serde_json::Value {
    h.http
        .get(url)
        .bearer_auth(bearer)
        .send()
        .await
        .expect("request sent")
        .json()
        .await
        .expect("JSON")
}

/// A chain finalizing `lag` blocks behind its head, served as an archive node, and a gateway
/// polling it for deposits; returns once the poller has set its first cursor.
async fn deposit_gateway(lag: u64) -> (ChainSim, Listener, Harness, u64) {
    let sim = ChainSim::new();
    sim.set_finality_lag(lag);
    sim.produce_blocks(5);
    let node = sim.serve(Role::Archive).await.unwrap();
    let url = node.url();
    let h = Harness::start_with(SimConfig::default(), |c| {
        deposit_config(c, vec![url], vec![])
    })
    .await;
    let base = h.gw.url();
    let start = eventually(WAIT, "the first cursor", || cursor(&h, &base)).await;
    (sim, node, h, start)
}

#[tokio::test]
async fn a_linked_transfer_is_credited_exactly_once_across_restarts_replicas_and_redelivery() {
    let (sim, _node, h, start) = deposit_gateway(2).await;
    let base = h.gw.url();
    let res = link(&h, &base, &h.token, TEST_ACCOUNT, "//Payer", "n1").await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let before = balance(&h, &base, TEST_ACCOUNT).await;

    sim.queue_transfer(public("//Payer"), public("//Deposit"), 1_500_000_000);
    sim.queue_transfer(public("//Payer"), public("//Elsewhere"), 7);
    let head = sim.produce_blocks(4);
    let block = (start + 1..=head)
        .find(|n| !sim.transfers_in(*n).is_empty())
        .expect("the transfer's block");
    let index = sim
        .transfers_in(block)
        .iter()
        .find(|t| t.2 == public("//Deposit"))
        .unwrap()
        .0;
    let reference = format!("tao:{block}:{index}");
    let status = chain_status(&h, &base).await;
    assert!(
        status["deposits"]["head"].as_u64().unwrap()
            >= status["deposits"]["finalized"].as_u64().unwrap()
    );
    eventually(WAIT, "the credit", || async {
        (balance(&h, &base, TEST_ACCOUNT).await == before + 1_500_000_000).then_some(())
    })
    .await;
    let view: serde_json::Value = get_json(&h, &h.url("/v1/account"), &h.token).await;
    assert_eq!(view["deposits"][0]["reference"], reference);
    assert_eq!(view["deposits"][0]["amount_rao"], 1_500_000_000u64);

    // Redelivery: the cursor is put back before the block and the lease dropped, twice: once
    // with a second replica polling beside the first, once after that replica restarts.
    let store = shared_redis_store()
        .await
        .with_key_prefix(&h.cfg.redis.key_prefix);
    let redeliver = || async {
        store
            .set(
                "{chain}:deposits:cursor",
                start.to_string().as_bytes(),
                None,
            )
            .await
            .unwrap();
        store.del("{chain}:lease:deposits").await.unwrap();
    };
    redeliver().await;
    let replica = h.replica().await;
    let head = sim.produce_blocks(3);
    eventually(WAIT, "the blocks read again", || async {
        cursor(&h, &replica.url()).await.filter(|c| *c >= head - 2)
    })
    .await;
    assert_eq!(
        balance(&h, &base, TEST_ACCOUNT).await,
        before + 1_500_000_000
    );
    replica.stop().await.unwrap();
    redeliver().await;
    let restarted = h.replica().await;
    let head = sim.produce_blocks(3);
    eventually(WAIT, "the blocks read again after the restart", || async {
        cursor(&h, &restarted.url())
            .await
            .filter(|c| *c >= head - 2)
    })
    .await;
    assert_eq!(
        balance(&h, &base, TEST_ACCOUNT).await,
        before + 1_500_000_000
    );
    // Seen again (by one replica or the other) and found already credited; credited once.
    let mut credited = 0.0;
    for b in [base.clone(), restarted.url()] {
        credited += metric(&h.http, &b, "agw_deposits_credited_rao_total")
            .await
            .unwrap_or(0.0);
    }
    assert_eq!(credited, 1_500_000_000.0, "credited once in all");
    let duplicates = metric(&h.http, &base, "agw_deposits_total{outcome=\"duplicate\"}")
        .await
        .unwrap_or(0.0)
        + metric(
            &h.http,
            &restarted.url(),
            "agw_deposits_total{outcome=\"duplicate\"}",
        )
        .await
        .unwrap_or(0.0);
    assert!(duplicates >= 1.0, "the redelivered deposit was seen again");
    drop(restarted);

    // The books still balance.
    let report = affine_gateway::metering::reconcile::run(&h.cfg)
        .await
        .unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test]
async fn the_runtime_upgrade_block_decodes_with_its_parents_metadata() {
    let (sim, _node, h, _) = deposit_gateway(0).await;
    let base = h.gw.url();
    assert_eq!(
        link(&h, &base, &h.token, TEST_ACCOUNT, "//Payer", "u1")
            .await
            .status(),
        201
    );
    let before = balance(&h, &base, TEST_ACCOUNT).await;

    // A transfer in the upgrade block (old runtime's events) and one after it (new runtime's).
    sim.runtime_upgrade();
    sim.queue_transfer(public("//Payer"), public("//Deposit"), 11);
    let upgrade = sim.produce_blocks(1);
    sim.queue_transfer(public("//Payer"), public("//Deposit"), 22);
    let after = sim.produce_blocks(1);
    // The runtime in effect after the upgrade block is the new one; the block itself ran the old.
    assert_ne!(
        sim.spec_version_at(upgrade - 1),
        sim.spec_version_at(upgrade)
    );
    assert_eq!(sim.spec_version_at(upgrade), sim.spec_version_at(after));
    eventually(WAIT, "both credits", || async {
        (balance(&h, &base, TEST_ACCOUNT).await == before + 33).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_gap_past_the_lite_nodes_retention_is_read_from_the_archive() {
    let sim = ChainSim::new();
    sim.set_finality_lag(0);
    sim.produce_blocks(5);
    let lite = sim.serve(Role::Lite { retention: 4 }).await.unwrap();
    let archive = sim.serve(Role::Archive).await.unwrap();
    let (l, a) = (lite.url(), archive.url());
    let h = Harness::start_with(SimConfig::default(), |c| {
        deposit_config(c, vec![l], vec![a])
    })
    .await;
    let base = h.gw.url();
    assert_eq!(
        link(&h, &base, &h.token, TEST_ACCOUNT, "//Payer", "g1")
            .await
            .status(),
        201
    );
    let start = eventually(WAIT, "the first cursor", || cursor(&h, &base)).await;
    let before = balance(&h, &base, TEST_ACCOUNT).await;
    // The poller falls behind: put its cursor back and make 30 blocks at once, the transfer
    // in the first of them, so the lite node has discarded its state.
    let store = shared_redis_store()
        .await
        .with_key_prefix(&h.cfg.redis.key_prefix);
    store.del("{chain}:lease:deposits").await.unwrap();
    sim.queue_transfer(public("//Payer"), public("//Deposit"), 5);
    sim.produce_blocks(30);
    store
        .set(
            "{chain}:deposits:cursor",
            start.to_string().as_bytes(),
            None,
        )
        .await
        .unwrap();
    eventually(WAIT, "the credit from the archive", || async {
        (balance(&h, &base, TEST_ACCOUNT).await == before + 5).then_some(())
    })
    .await;
    assert!(
        archive.requests("state_getStorage") >= 1,
        "the archive answered"
    );
}

#[tokio::test]
async fn an_unlinked_transfer_waits_for_one_assignment() {
    let (sim, _node, h, _) = deposit_gateway(0).await;
    let base = h.gw.url();
    sim.queue_transfer(public("//Stranger"), public("//Deposit"), 42);
    sim.produce_blocks(2);
    let list = eventually(WAIT, "the unattributed deposit", || async {
        let v: serde_json::Value = h
            .http
            .get(h.url("/admin/v1/deposits?status=unattributed"))
            .bearer_auth(admin_token())
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["deposits"].as_array().filter(|a| !a.is_empty()).cloned()
    })
    .await;
    assert_eq!(list[0]["from"], addr("//Stranger"));
    assert_eq!(list[0]["status"], "unattributed");
    let reference = list[0]["reference"].as_str().unwrap().to_string();
    let before = balance(&h, &base, TEST_ACCOUNT).await;
    let assign = |account: &'static str| {
        let (http, url) = (
            h.http.clone(),
            h.url(&format!("/admin/v1/deposits/{reference}/assign")),
        );
        async move {
            http.post(url)
                .bearer_auth(admin_token())
                .json(&serde_json::json!({ "account": account }))
                .send()
                .await
                .unwrap()
        }
    };
    let res = assign(TEST_ACCOUNT).await;
    assert_eq!(res.status(), 200);
    assert_eq!(balance(&h, &base, TEST_ACCOUNT).await, before + 42);
    expect_problem(assign("someone-else").await, 409, "conflict").await;
    expect_problem(assign(TEST_ACCOUNT).await, 409, "conflict").await;
    assert_eq!(balance(&h, &base, TEST_ACCOUNT).await, before + 42);
    let v: serde_json::Value = get_json(&h, &h.url("/admin/v1/deposits"), &admin_token()).await;
    assert_eq!(v["deposits"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn chain_features_are_off_without_a_chain_section() {
    let h = Harness::start(SimConfig::default()).await;
    let s = chain_status(&h, &h.gw.url()).await;
    assert_eq!(s["enabled"], false);
    let res = h
        .http
        .get(h.url("/admin/v1/deposits"))
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap();
    expect_problem(res, 404, "not_found").await;
    let _: Option<Running> = None;
}

#[tokio::test]
async fn a_sponsor_pays_for_its_subnets_members() {
    let sim = ChainSim::new();
    sim.set_subnet(14, vec![neuron("//Member", true, 1)]);
    let head = sim.produce_blocks(3);
    let node = sim.serve(Role::Archive).await.unwrap();
    let h = start(&node, |c| {
        c.subnets.insert("14".into(), "subnet".into());
        c.subnet_gates.insert(
            "14".into(),
            SubnetGate {
                bill_to: Some("sn14-owner".into()),
                ..SubnetGate::default()
            },
        );
    })
    .await;
    synced(&h, &h.gw.url(), 14, head - 2).await;
    let member = addr("//Member");
    // The sponsor has no money yet: the member's priced request is refused on its balance.
    expect_problem(
        reason_as(&h, &h.gw.url(), &member).await,
        402,
        "insufficient_balance",
    )
    .await;
    assert!(
        put_account(&h.http, &h.gw.url(), "sn14-owner", "{}")
            .await
            .status()
            .is_success()
    );
    let res = h
        .http
        .post(h.url("/admin/v1/accounts/sn14-owner/credits"))
        .bearer_auth(admin_token())
        .json(&serde_json::json!({"amount_rao": 1_000_000_000u64, "reference": "seed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = reason_as(&h, &h.gw.url(), &member).await;
    assert_eq!(res.status(), 200);
    let cost = res.json::<serde_json::Value>().await.unwrap()["cost"]["rao"]
        .as_i64()
        .unwrap();
    assert!(cost > 0);
    let sponsor = h.account("sn14-owner").await;
    assert_eq!(
        sponsor["balance_rao"].as_i64().unwrap(),
        1_000_000_000 - cost
    );
    // The usage event is the sponsor's, and names the member.
    let events = h.events_of(&this_month()).await;
    let e = events
        .iter()
        .find(|e| e["metadata"]["member"] == member)
        .expect("the member's event");
    assert_eq!(e["account"], "sn14-owner");
    assert_eq!(e["netuid"], 14);
}
