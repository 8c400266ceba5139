//! Plans: the limits and prices an account (or a subnet's aggregate) is held to.
//!
//! Three plans are built in; `[plans.NAME]` tables in the configuration override their
//! fields or add plans, and `[subnets]` maps a netuid to the plan that limits the sum of that
//! subnet's hotkeys. Everything is resolved once at start into [`Plans`], read-only after.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

use crate::config::{Config, PlanConfig, PricingMode};
use crate::metering::{Prices, Pricing};

/// The largest `markup_percent` of a provider-priced plan: ten times the provider's price.
pub const MAX_MARKUP_PERCENT: u32 = 1000;

/// The effective limits and prices of one plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Plan {
    /// The plan's name.
    pub name: String,
    /// Requests per minute.
    pub requests_per_minute: u64,
    /// Tokens per minute.
    pub tokens_per_minute: u64,
    /// Tokens per day.
    pub tokens_per_day: u64,
    /// Requests in flight at once.
    pub max_concurrent: u64,
    /// Largest `max_tokens`.
    pub max_tokens: u32,
    /// Rao per million input tokens.
    pub input_rao_per_mtok: u64,
    /// Rao per million output tokens (0 on a provider-priced plan: its prices follow the
    /// provider, see `GET /v1/models`).
    pub output_rao_per_mtok: u64,
    /// `fixed` (the two prices above) or `provider` (the serving upstream's price for the
    /// model, marked up by `markup_percent`).
    pub pricing: PricingMode,
    /// A provider-priced plan's markup over the provider's price, whole percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub markup_percent: Option<u32>,
}

impl Plan {
    /// Where the plan's prices come from.
    pub fn pricing(&self) -> Pricing {
        match self.pricing {
            PricingMode::Fixed => Pricing::Fixed(Prices {
                input_rao_per_mtok: self.input_rao_per_mtok,
                output_rao_per_mtok: self.output_rao_per_mtok,
            }),
            PricingMode::Provider => Pricing::Provider {
                markup_percent: self.markup_percent.unwrap_or(0),
            },
        }
    }
}

/// The built-in plans. `public` (unregistered hotkeys) is the free tier: tightly limited and
/// priced at zero, since such a caller has no account to pay from. `subnet` and `enterprise`
/// cost 0.0005 TAO per million input tokens and 0.002 TAO per million output tokens (just above
/// Chutes' TAO prices for a 32B reasoner).
pub fn builtin() -> Vec<Plan> {
    let plan = |name: &str, rpm, tpm, tpd, conc, max_tokens| Plan {
        name: name.to_string(),
        requests_per_minute: rpm,
        tokens_per_minute: tpm,
        tokens_per_day: tpd,
        max_concurrent: conc,
        max_tokens,
        input_rao_per_mtok: 500_000,
        output_rao_per_mtok: 2_000_000,
        pricing: PricingMode::Fixed,
        markup_percent: None,
    };
    let free = |p: Plan| Plan {
        input_rao_per_mtok: 0,
        output_rao_per_mtok: 0,
        ..p
    };
    vec![
        free(plan("public", 20, 100_000, 1_000_000, 2, 8_192)),
        plan("subnet", 600, 2_000_000, 100_000_000, 32, 32_768),
        plan("enterprise", 1_200, 4_000_000, 200_000_000, 64, 32_768),
    ]
}

/// Largest `max_tokens` a plan may allow.
pub const MAX_PLAN_MAX_TOKENS: u32 = 1_000_000;

/// All plans and the subnet mapping, resolved.
#[derive(Debug, Clone, Default)]
pub struct Plans {
    by_name: HashMap<String, Arc<Plan>>,
    subnets: HashMap<u16, Arc<Plan>>,
}

fn valid_plan_name(n: &str) -> bool {
    (1..=32).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn merge(name: &str, base: Option<&Plan>, c: &PlanConfig) -> Result<Plan, (String, String)> {
    let field = |f: &str| format!("plans.{name}.{f}");
    let need = |v: Option<u64>, b: Option<u64>, f: &str| -> Result<u64, (String, String)> {
        let v = v
            .or(b)
            .ok_or_else(|| (field(f), "is required for a new plan".to_string()))?;
        if v == 0 {
            return Err((field(f), "must be at least 1".to_string()));
        }
        Ok(v)
    };
    let requests_per_minute = need(
        c.requests_per_minute,
        base.map(|b| b.requests_per_minute),
        "requests_per_minute",
    )?;
    let tokens_per_minute = need(
        c.tokens_per_minute,
        base.map(|b| b.tokens_per_minute),
        "tokens_per_minute",
    )?;
    let tokens_per_day = need(
        c.tokens_per_day,
        base.map(|b| b.tokens_per_day),
        "tokens_per_day",
    )?;
    let max_concurrent = need(
        c.max_concurrent,
        base.map(|b| b.max_concurrent),
        "max_concurrent",
    )?;
    let max_tokens = c.max_tokens.or(base.map(|b| b.max_tokens)).ok_or_else(|| {
        (
            field("max_tokens"),
            "is required for a new plan".to_string(),
        )
    })?;
    if !(1..=MAX_PLAN_MAX_TOKENS).contains(&max_tokens) {
        return Err((
            field("max_tokens"),
            format!("must be between 1 and {MAX_PLAN_MAX_TOKENS}"),
        ));
    }
    let pricing = c.pricing.or(base.map(|b| b.pricing)).unwrap_or_default();
    let (input_rao_per_mtok, output_rao_per_mtok, markup_percent) = match pricing {
        PricingMode::Fixed => {
            if c.markup_percent.is_some() {
                return Err((
                    field("markup_percent"),
                    "applies only to pricing = \"provider\"; remove it or set pricing = \"provider\"".into(),
                ));
            }
            let fixed = |v: Option<u64>, b: Option<u64>| v.or(b).unwrap_or(0);
            (
                fixed(c.input_rao_per_mtok, base.map(|b| b.input_rao_per_mtok)),
                fixed(c.output_rao_per_mtok, base.map(|b| b.output_rao_per_mtok)),
                None,
            )
        }
        PricingMode::Provider => {
            // Prices written for a provider-priced plan would be ignored: refuse them rather
            // than let an operator believe they are a floor or a fallback. (A built-in
            // plan's own fixed prices are simply replaced.)
            for (f, v) in [
                ("input_rao_per_mtok", c.input_rao_per_mtok),
                ("output_rao_per_mtok", c.output_rao_per_mtok),
            ] {
                if v.is_some() {
                    return Err((
                        field(f),
                        "a plan with pricing = \"provider\" takes its prices from the provider; remove it (or set pricing = \"fixed\")".into(),
                    ));
                }
            }
            let markup = c
                .markup_percent
                .or(base.and_then(|b| b.markup_percent))
                .ok_or_else(|| {
                    (
                        field("markup_percent"),
                        "is required with pricing = \"provider\" (0 sells at the provider's price)"
                            .to_string(),
                    )
                })?;
            if markup > MAX_MARKUP_PERCENT {
                return Err((
                    field("markup_percent"),
                    format!("must be between 0 and {MAX_MARKUP_PERCENT} percent, got {markup}"),
                ));
            }
            (0, 0, Some(markup))
        }
    };
    Ok(Plan {
        name: name.to_string(),
        requests_per_minute,
        tokens_per_minute,
        tokens_per_day,
        max_concurrent,
        max_tokens,
        input_rao_per_mtok,
        output_rao_per_mtok,
        pricing,
        markup_percent,
    })
}

impl Plans {
    /// Resolves the built-in plans, the configured ones and the subnet mapping. The error is
    /// `(field, what was expected)`.
    pub fn from_config(config: &Config) -> Result<Plans, (String, String)> {
        let plans = Self::resolve(&config.plans, &config.subnets)?;
        // `[subnet_gates]` name a plan for implicit members and a sponsor account.
        for (netuid, gate) in &config.subnet_gates {
            let field = |f: &str| format!("subnet_gates.{netuid}.{f}");
            if let Some(p) = &gate.plan
                && plans.get(p).is_none()
            {
                return Err((field("plan"), format!("unknown plan `{p}`")));
            }
            if let Some(sponsor) = &gate.bill_to
                && crate::accounts::AccountKind::of_id(sponsor).is_none()
            {
                return Err((
                    field("bill_to"),
                    format!(
                        "must be an account id (SS58 hotkey or enterprise slug), got {sponsor:?}"
                    ),
                ));
            }
        }
        Ok(plans)
    }

    /// As [`Plans::from_config`], with the error of an invalid configuration: the plans are
    /// checked where they are resolved (the binary's configuration loading, and the gateway's
    /// start), so the configuration itself needs to know nothing of them.
    pub fn check(config: &Config) -> Result<Plans, crate::config::ConfigError> {
        Self::from_config(config).map_err(|(field, expected)| crate::config::ConfigError::Invalid {
            field: field.into(),
            origin: None,
            expected,
        })
    }

    /// As [`Plans::from_config`], from the two tables.
    pub fn resolve(
        plans: &BTreeMap<String, PlanConfig>,
        subnets: &BTreeMap<String, String>,
    ) -> Result<Plans, (String, String)> {
        let mut by_name: HashMap<String, Arc<Plan>> = builtin()
            .into_iter()
            .map(|p| (p.name.clone(), Arc::new(p)))
            .collect();
        for (name, c) in plans {
            if !valid_plan_name(name) {
                return Err((
                    format!("plans.{name}"),
                    "plan names are 1 to 32 of [a-z0-9_-]".into(),
                ));
            }
            let merged = merge(name, by_name.get(name).map(|p| p.as_ref()), c)?;
            by_name.insert(name.clone(), Arc::new(merged));
        }
        let mut by_netuid = HashMap::new();
        for (netuid, plan) in subnets {
            let n: u16 = netuid.parse().map_err(|_| {
                (
                    format!("subnets.{netuid}"),
                    "keys are netuids (0 to 65535)".to_string(),
                )
            })?;
            let p = by_name.get(plan).ok_or_else(|| {
                (
                    format!("subnets.{netuid}"),
                    format!("unknown plan `{plan}`"),
                )
            })?;
            by_netuid.insert(n, Arc::clone(p));
        }
        Ok(Plans {
            by_name,
            subnets: by_netuid,
        })
    }

    /// Every plan's name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// A plan by name.
    pub fn get(&self, name: &str) -> Option<&Arc<Plan>> {
        self.by_name.get(name)
    }

    /// Whether a plan of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Whether any plan takes its prices from the provider (then the catalogue is polled).
    pub fn any_provider_priced(&self) -> bool {
        self.by_name
            .values()
            .any(|p| p.pricing == PricingMode::Provider)
    }

    /// The plan that limits subnet `netuid`'s aggregate, if the subnet is mapped.
    pub fn subnet(&self, netuid: u16) -> Option<&Arc<Plan>> {
        self.subnets.get(&netuid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pc(rpm: Option<u64>) -> PlanConfig {
        PlanConfig {
            requests_per_minute: rpm,
            ..PlanConfig::default()
        }
    }

    #[test]
    fn builtins_exist_and_overrides_keep_other_fields() {
        let mut plans = BTreeMap::new();
        plans.insert("subnet".to_string(), pc(Some(100)));
        let p = Plans::resolve(&plans, &BTreeMap::new()).unwrap();
        let s = p.get("subnet").unwrap();
        assert_eq!(s.requests_per_minute, 100);
        assert_eq!(s.tokens_per_minute, 2_000_000);
        assert!(p.contains("public") && p.contains("enterprise"));
    }

    #[test]
    fn subnet_gates_name_known_plans_and_account_ids() {
        for (toml, field) in [
            (
                "[subnet_gates.\"5\"]\nplan = \"gold\"\n",
                "subnet_gates.5.plan",
            ),
            (
                "[subnet_gates.\"5\"]\nbill_to = \"A B\"\n",
                "subnet_gates.5.bill_to",
            ),
        ] {
            let c = Config::from_toml_str(toml).unwrap();
            assert_eq!(Plans::from_config(&c).unwrap_err().0, field, "{toml}");
        }
        let c = Config::from_toml_str(
            "[subnet_gates.\"5\"]\nplan = \"enterprise\"\nbill_to = \"sn5-owner\"\n",
        )
        .unwrap();
        assert!(Plans::from_config(&c).is_ok());
    }

    #[test]
    fn new_plans_need_every_limit_and_subnets_known_plans() {
        let mut plans = BTreeMap::new();
        plans.insert("gold".to_string(), pc(Some(600)));
        let (field, _) = Plans::resolve(&plans, &BTreeMap::new()).unwrap_err();
        assert_eq!(field, "plans.gold.tokens_per_minute");
        let mut subnets = BTreeMap::new();
        subnets.insert("12".to_string(), "gold".to_string());
        let (field, msg) = Plans::resolve(&BTreeMap::new(), &subnets).unwrap_err();
        assert_eq!(field, "subnets.12");
        assert!(msg.contains("gold"));
        subnets.insert("12".to_string(), "subnet".to_string());
        subnets.insert("x".to_string(), "subnet".to_string());
        assert_eq!(
            Plans::resolve(&BTreeMap::new(), &subnets).unwrap_err().0,
            "subnets.x"
        );
        subnets.remove("x");
        let p = Plans::resolve(&BTreeMap::new(), &subnets).unwrap();
        assert_eq!(p.subnet(12).unwrap().name, "subnet");
        assert!(p.subnet(13).is_none());
    }

    fn provider(markup: Option<u32>) -> PlanConfig {
        PlanConfig {
            pricing: Some(PricingMode::Provider),
            markup_percent: markup,
            ..PlanConfig::default()
        }
    }

    fn one(name: &str, c: PlanConfig) -> Result<Plans, (String, String)> {
        Plans::resolve(&BTreeMap::from([(name.to_string(), c)]), &BTreeMap::new())
    }

    #[test]
    fn a_provider_priced_plan_takes_a_markup_and_no_fixed_prices() {
        let p = one("subnet", provider(Some(20))).unwrap();
        let s = p.get("subnet").unwrap();
        assert_eq!(s.pricing(), Pricing::Provider { markup_percent: 20 });
        // The built-in fixed prices are replaced, not kept as a floor.
        assert_eq!((s.input_rao_per_mtok, s.output_rao_per_mtok), (0, 0));
        assert!(p.any_provider_priced());
        assert!(!one("subnet", pc(Some(5))).unwrap().any_provider_priced());
        let enterprise = p.get("enterprise").unwrap().pricing();
        assert_eq!(
            enterprise,
            Pricing::Fixed(Prices {
                input_rao_per_mtok: 500_000,
                output_rao_per_mtok: 2_000_000
            })
        );
        assert_eq!(
            one("subnet", provider(Some(MAX_MARKUP_PERCENT)))
                .unwrap()
                .get("subnet")
                .unwrap()
                .markup_percent,
            Some(MAX_MARKUP_PERCENT)
        );
    }

    #[test]
    fn provider_pricing_mistakes_are_refused_naming_the_field() {
        let field = |c| one("subnet", c).unwrap_err().0;
        assert_eq!(field(provider(None)), "plans.subnet.markup_percent");
        assert_eq!(
            field(provider(Some(MAX_MARKUP_PERCENT + 1))),
            "plans.subnet.markup_percent"
        );
        assert_eq!(
            field(PlanConfig {
                input_rao_per_mtok: Some(1),
                ..provider(Some(20))
            }),
            "plans.subnet.input_rao_per_mtok"
        );
        assert_eq!(
            field(PlanConfig {
                output_rao_per_mtok: Some(1),
                ..provider(Some(20))
            }),
            "plans.subnet.output_rao_per_mtok"
        );
        assert_eq!(
            field(PlanConfig {
                markup_percent: Some(20),
                ..pc(Some(5))
            }),
            "plans.subnet.markup_percent"
        );
    }

    #[test]
    fn zero_limits_and_bad_names_are_refused() {
        let mut plans = BTreeMap::new();
        plans.insert("public".to_string(), pc(Some(0)));
        assert!(Plans::resolve(&plans, &BTreeMap::new()).is_err());
        let mut plans = BTreeMap::new();
        plans.insert("Gold!".to_string(), pc(Some(1)));
        assert!(Plans::resolve(&plans, &BTreeMap::new()).is_err());
    }
}
