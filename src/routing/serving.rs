//! The serving map: where each model is served.
//!
//! Since Affine's miners stopped serving their models, the gateway has to know, for any
//! model id, which OpenAI-compatible endpoint serves it: Chutes' router, a chute of the
//! operator's, a self-hosted vLLM/SGLang server. The configured `[[serving]]` rules say so,
//! in order, first match wins; the built-in default rule (`*` at `upstream.url` with
//! `upstream.api_key` and `[upstream]`'s timeouts) is always the last one, so without rules
//! everything is served as before, and every model resolves to some rule.
//!
//! A rule's `url` and `model_name` may contain `{model}` (the repo id, `org/model`),
//! `{revision}` and `{slug}` ([`chute_slug`]). A rule that uses `{revision}` cannot serve a
//! model without a revision: for such a model the rule is skipped and the next one applies
//! (the built-in default never needs a revision), so a model is never sent to a URL with a
//! hole in it.

use std::sync::Arc;
use std::time::Duration;

use globset::{GlobBuilder, GlobMatcher};

use crate::api::ServingView;
use crate::config::{Config, Secret, ServingRuleConfig, UpstreamConfig};
use crate::routing::winner::strip_credentials;
use crate::upstream::client::Timeouts;

/// The longest slug Chutes gives a chute (`max_length=58` in its slugify call): with the
/// `.chutes.ai` suffix a subdomain stays within DNS's 63-byte label.
pub const CHUTE_SLUG_MAX: usize = 58;

/// The subdomain slug Chutes gives a chute, so `https://{slug}.chutes.ai/v1` reaches it.
///
/// Chutes' API (chutes-api, `api/chute/router.py`, on deploy) computes
/// `re.sub(r"[^a-z0-9-]+$", "-", slugify(f"{username}-{chute.name}", max_length=58).lower())`
/// with python-slugify's defaults, and its vLLM/SGLang templates name a chute after the
/// Hugging Face repo (`name=model_name`, `org/model`). For the ASCII of repo ids python-slugify
/// reduces to: lowercase; every run of characters other than `[-a-z0-9]` becomes `-`; runs
/// of `-` collapse to one; `-` is stripped from both ends; then, when the result has 58
/// characters or more, it is cut to 58 and stripped of `-` again. Chutes' final substitution
/// is a no-op on that alphabet. `user` is the deploying Chutes username; without it the slug
/// is that of `chute_name` alone (the same rule applied to the name only). Non-ASCII input
/// (which python-slugify would transliterate) cannot occur in repo ids and is treated like any
/// other disallowed character. A name that slugs to nothing gives the empty string.
/// (Chutes appends a random `-xxxxx` when the slug is taken; that cannot be derived.)
pub fn chute_slug(user: Option<&str>, chute_name: &str) -> String {
    let text = match user {
        Some(u) => format!("{u}-{chute_name}"),
        None => chute_name.to_string(),
    };
    let mut slug = String::with_capacity(text.len());
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.ends_with('-') {
            // A disallowed run and a `-` alike become one `-`.
            slug.push('-');
        }
    }
    let trimmed = slug.trim_matches('-');
    if trimmed.len() < CHUTE_SLUG_MAX {
        return trimmed.to_string();
    }
    trimmed[..CHUTE_SLUG_MAX].trim_matches('-').to_string()
}

/// Compiles a rule's `match`: a glob over the whole model id in which `*` also spans `/`
/// (`org/model` ids are not paths), case-sensitive.
pub(crate) fn compile_glob(pattern: &str) -> Result<GlobMatcher, String> {
    if pattern.is_empty() {
        return Err("must not be empty (use \"*\" to match every model)".into());
    }
    GlobBuilder::new(pattern)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("is not a valid glob: {e}"))
}

/// A placeholder of a rule's `url` or `model_name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholder {
    Model,
    Revision,
    Slug,
}

/// A parsed template: literal text and placeholders.
#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Var(Placeholder),
}

/// What the placeholders stand for, for one model.
struct Vars<'a> {
    model: &'a str,
    revision: Option<&'a str>,
    slug: &'a str,
}

/// Values that look like real ones, to check a template's expansion at start.
const SAMPLE: Vars<'static> = Vars {
    model: "org/model",
    revision: Some("0123456789abcdef0123456789abcdef01234567"),
    slug: "user-org-model",
};

fn parse(template: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        match rest.find(['{', '}']) {
            None => {
                parts.push(Part::Text(rest.to_string()));
                break;
            }
            Some(at) if rest.as_bytes()[at] == b'}' => {
                return Err(format!("has a `}}` without `{{` in {template:?}"));
            }
            Some(at) => {
                if at > 0 {
                    parts.push(Part::Text(rest[..at].to_string()));
                }
                let after = &rest[at + 1..];
                let close = after
                    .find('}')
                    .ok_or_else(|| format!("has a `{{` without `}}` in {template:?}"))?;
                let var = match &after[..close] {
                    "model" => Placeholder::Model,
                    "revision" => Placeholder::Revision,
                    "slug" => Placeholder::Slug,
                    other => {
                        return Err(format!(
                            "has an unknown placeholder `{{{other}}}` (known: {{model}}, \
                             {{revision}}, {{slug}})"
                        ));
                    }
                };
                parts.push(Part::Var(var));
                rest = &after[close + 1..];
            }
        }
    }
    Ok(parts)
}

fn uses(parts: &[Part], p: Placeholder) -> bool {
    parts
        .iter()
        .any(|part| matches!(part, Part::Var(v) if *v == p))
}

/// The template with `vars` filled in; `None` when it needs a revision the model lacks.
fn expand(parts: &[Part], vars: &Vars<'_>) -> Option<String> {
    let mut out = String::new();
    for part in parts {
        match part {
            Part::Text(t) => out.push_str(t),
            Part::Var(Placeholder::Model) => out.push_str(vars.model),
            Part::Var(Placeholder::Revision) => out.push_str(vars.revision?),
            Part::Var(Placeholder::Slug) => out.push_str(vars.slug),
        }
    }
    Some(out)
}

/// Checks a rule's `url`: known placeholders only, no `{model}` in the host (the id has a
/// `/`; `{slug}` is the host-safe form), and an `http(s)://` base URL once expanded.
pub(crate) fn check_url_template(template: &str) -> Result<(), String> {
    let parts = parse(template)?;
    let authority_end = template
        .find("://")
        .map(|s| s + 3)
        .and_then(|start| {
            template[start..]
                .find('/')
                .map(|e| start + e)
                .or(Some(template.len()))
        })
        .unwrap_or(0);
    if template[..authority_end].contains("{model}") {
        return Err(format!(
            "has {{model}} in its host, and a model id contains `/`; use {{slug}} there, \
             got {template:?}"
        ));
    }
    let expanded = expand(&parts, &SAMPLE).unwrap_or_default();
    crate::config::check_base_url(&expanded)
        .map_err(|e| format!("{e} (expanded with sample values)"))
}

/// Checks a rule's `model_name`: known placeholders only and a valid model name once
/// expanded.
pub(crate) fn check_model_template(template: &str) -> Result<(), String> {
    let parts = parse(template)?;
    let expanded = expand(&parts, &SAMPLE).unwrap_or_default();
    crate::config::check_model_name(&expanded)
}

/// The deadlines of an upstream with its own optional ones (connect in milliseconds, then
/// first token, idle and total in seconds, as a fallback or serving rule writes them); each
/// unset one is `[upstream]`'s.
pub(crate) fn deadlines(u: &UpstreamConfig, own: [Option<u64>; 4]) -> Timeouts {
    let [connect, first_token, idle, total] = own;
    Timeouts {
        connect: Duration::from_millis(connect.unwrap_or(u.connect_timeout_ms)),
        first_token: Duration::from_secs(first_token.unwrap_or(u.first_token_timeout_secs)),
        idle: Duration::from_secs(idle.unwrap_or(u.idle_timeout_secs)),
        total: Duration::from_secs(total.unwrap_or(u.total_timeout_secs)),
    }
}

/// One rule, compiled.
#[derive(Debug)]
struct Rule {
    index: usize,
    pattern: Arc<str>,
    /// `None`: the built-in default, which matches every model.
    glob: Option<GlobMatcher>,
    url: Vec<Part>,
    model_name: Option<Vec<Part>>,
    needs_revision: bool,
    chutes_user: Option<String>,
    key: Option<Secret>,
    timeouts: Timeouts,
}

/// Where one model is served: the rule that applies, expanded for it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The rule's index in `[[serving]]` (0-based); the built-in default's is the number of
    /// configured rules.
    pub rule: usize,
    /// The rule's `match`.
    pub pattern: Arc<str>,
    /// The expanded base URL (it may carry userinfo; show it only through [`Target::view`]).
    pub base_url: String,
    /// What to send as `model`.
    pub model_name: String,
    /// The rule's deadlines.
    pub timeouts: Timeouts,
    key: Option<Secret>,
}

impl Target {
    /// The rule's provider key (sent as a Bearer token; never shown).
    pub fn key(&self) -> Option<&Secret> {
        self.key.as_ref()
    }

    /// What `GET /v1/winner` shows of it: no key, no userinfo.
    pub fn view(&self) -> ServingView {
        ServingView {
            rule: self.rule,
            pattern: self.pattern.to_string(),
            url: strip_credentials(&self.base_url),
            model_name: self.model_name.clone(),
        }
    }
}

/// The compiled `[[serving]]` rules followed by the built-in default.
#[derive(Debug)]
pub struct ServingMap {
    rules: Vec<Rule>,
}

impl ServingMap {
    /// The rules of `config`, then the built-in default serving every model at `default_url`
    /// with `default_key` (the configured upstream, or the embedded simulator) and
    /// `[upstream]`'s timeouts. Rules are checked again here (a `Config` built in code never
    /// went through validation); a rule naming `api_key_env` must have read it
    /// ([`Config::resolve_serving_keys`]).
    pub fn new(
        config: &Config,
        default_url: &str,
        default_key: Option<&Secret>,
    ) -> Result<ServingMap, String> {
        let u = &config.upstream;
        let timeouts = |r: Option<&ServingRuleConfig>| {
            deadlines(
                u,
                [
                    r.and_then(|r| r.connect_timeout_ms),
                    r.and_then(|r| r.first_token_timeout_secs),
                    r.and_then(|r| r.idle_timeout_secs),
                    r.and_then(|r| r.total_timeout_secs),
                ],
            )
        };
        let mut rules = Vec::with_capacity(config.serving.len() + 1);
        for (index, r) in config.serving.iter().enumerate() {
            let err = |field: &str, e: String| format!("serving[{index}].{field}: {e}");
            let glob = compile_glob(&r.pattern).map_err(|e| err("match", e))?;
            check_url_template(&r.url).map_err(|e| err("url", e))?;
            let url = parse(&r.url).map_err(|e| err("url", e))?;
            let model_name = match &r.model_name {
                Some(m) => {
                    check_model_template(m).map_err(|e| err("model_name", e))?;
                    Some(parse(m).map_err(|e| err("model_name", e))?)
                }
                None => None,
            };
            if r.api_key.is_some() && r.api_key_env.is_some() {
                return Err(err(
                    "api_key",
                    "api_key and api_key_env are both set; keep one".into(),
                ));
            }
            if r.api_key_env.is_some() && r.env_api_key.is_none() {
                return Err(err(
                    "api_key_env",
                    "the environment variable was not read (or is not set)".into(),
                ));
            }
            let needs_revision = uses(&url, Placeholder::Revision)
                || model_name
                    .as_deref()
                    .is_some_and(|m| uses(m, Placeholder::Revision));
            rules.push(Rule {
                index,
                pattern: r.pattern.as_str().into(),
                glob: Some(glob),
                url,
                model_name,
                needs_revision,
                chutes_user: r.chutes_user.clone(),
                key: r.key().cloned(),
                timeouts: timeouts(Some(r)),
            });
        }
        rules.push(Rule {
            index: config.serving.len(),
            pattern: "*".into(),
            glob: None,
            url: vec![Part::Text(default_url.trim_end_matches('/').to_string())],
            model_name: None,
            needs_revision: false,
            chutes_user: None,
            key: default_key.cloned(),
            timeouts: timeouts(None),
        });
        Ok(ServingMap { rules })
    }

    /// The rule that serves `model` (at `revision`), expanded: the first whose `match`
    /// matches and that can serve it (a rule using `{revision}` is skipped for a model
    /// without one). An expansion that is not a valid base URL or model name (an odd id from
    /// Affine) is an error naming the rule: the model is not routable, rather than sent to
    /// another rule's provider.
    pub fn resolve(&self, model: &str, revision: Option<&str>) -> Result<Target, String> {
        for rule in &self.rules {
            if rule.glob.as_ref().is_some_and(|g| !g.is_match(model)) {
                continue;
            }
            if rule.needs_revision && revision.is_none() {
                continue;
            }
            let slug = chute_slug(rule.chutes_user.as_deref(), model);
            let vars = Vars {
                model,
                revision,
                slug: &slug,
            };
            let err = |e: String| format!("serving rule {} (`{}`): {e}", rule.index, rule.pattern);
            let base_url = expand(&rule.url, &vars).unwrap_or_default();
            if rule.glob.is_some() {
                crate::config::check_base_url(&base_url).map_err(err)?;
            }
            let model_name = match &rule.model_name {
                Some(m) => {
                    let name = expand(m, &vars).unwrap_or_default();
                    crate::config::check_model_name(&name).map_err(err)?;
                    name
                }
                None => model.to_string(),
            };
            return Ok(Target {
                rule: rule.index,
                pattern: rule.pattern.clone(),
                base_url,
                model_name,
                timeouts: rule.timeouts,
                key: rule.key.clone(),
            });
        }
        // Unreachable: the built-in default matches everything and needs no revision.
        Err(format!("no serving rule serves `{model}`"))
    }

    /// The built-in default rule serving `model` at `base_url` instead of its own URL: a
    /// winner whose Affine record names its chute (older Affine deployments) is served there
    /// with `[upstream]`'s key and timeouts, as before the serving map.
    pub fn default_at(&self, model: &str, base_url: &str) -> Target {
        let rule = self.builtin();
        Target {
            rule: rule.index,
            pattern: rule.pattern.clone(),
            base_url: base_url.trim_end_matches('/').to_string(),
            model_name: model.to_string(),
            timeouts: rule.timeouts,
            key: rule.key.clone(),
        }
    }

    /// What `GET /v1/winner` shows of the rule serving `model` (at `revision`): any model,
    /// so the pending and past champions can show theirs. `None` when it is not routable.
    pub fn view(&self, model: &str, revision: Option<&str>) -> Option<ServingView> {
        self.resolve(model, revision).ok().map(|t| t.view())
    }

    /// The built-in default's base URL (`upstream.url` or the simulator's).
    pub fn default_url(&self) -> String {
        expand(&self.builtin().url, &SAMPLE).unwrap_or_default()
    }

    fn builtin(&self) -> &Rule {
        // `new` always pushes it last.
        &self.rules[self.rules.len() - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_chutes() {
        // Chutes' own public chutes: user `chutes`, chute named after the repo.
        assert_eq!(
            chute_slug(Some("chutes"), "deepseek-ai/DeepSeek-R1"),
            "chutes-deepseek-ai-deepseek-r1"
        );
        assert_eq!(
            chute_slug(None, "affine-champ/Affine-Reasoner-32B"),
            "affine-champ-affine-reasoner-32b"
        );
        // Runs of disallowed characters and dashes become one dash; ends are stripped.
        assert_eq!(chute_slug(None, "Org__x/Model..v2--"), "org-x-model-v2");
        assert_eq!(chute_slug(Some("u"), "_a/b_"), "u-a-b");
        assert_eq!(chute_slug(None, "Qwen/Qwen2.5-7B"), "qwen-qwen2-5-7b");
        assert_eq!(chute_slug(None, "//"), "");
    }

    #[test]
    fn slugs_are_cut_at_58() {
        let long = format!("org/{}", "x".repeat(100));
        let s = chute_slug(Some("alice"), &long);
        assert_eq!(s.len(), CHUTE_SLUG_MAX);
        assert!(s.starts_with("alice-org-xxx"));
        // 57 characters stay as they are; 58 and more are cut to 58.
        let name57 = "a".repeat(57);
        assert_eq!(chute_slug(None, &name57), name57);
        // A cut that ends on a dash loses it.
        let dash_at_58 = format!("{}-{}", "a".repeat(57), "b".repeat(10));
        assert_eq!(chute_slug(None, &dash_at_58), "a".repeat(57));
    }

    #[test]
    fn templates() {
        assert!(check_url_template("https://{slug}.chutes.ai/v1").is_ok());
        assert!(check_url_template("http://10.0.0.1:8000/{model}/{revision}/v1").is_ok());
        let unknown = check_url_template("https://{name}.example/v1").unwrap_err();
        assert!(
            unknown.contains("unknown placeholder `{name}`"),
            "{unknown}"
        );
        assert!(check_url_template("https://{model}.example/v1").is_err());
        assert!(check_url_template("https://x/{slug").is_err());
        assert!(check_url_template("https://x/slug}").is_err());
        assert!(check_url_template("ftp://{slug}.example").is_err());
        assert!(check_url_template("https://{slug} x.example").is_err());
        assert!(check_model_template("{model}-served").is_ok());
        assert!(check_model_template("{bogus}").is_err());
        assert!(check_model_template("with space").is_err());
    }

    fn map(rules: Vec<ServingRuleConfig>) -> ServingMap {
        let c = Config {
            serving: rules,
            ..Config::default()
        };
        ServingMap::new(&c, "https://router.example/v1", None).unwrap()
    }

    #[test]
    fn first_matching_rule_wins_and_the_default_is_last() {
        let mut self_hosted = ServingRuleConfig::new("org/*", "http://gpu.internal:8000/v1");
        self_hosted.model_name = Some("served-{slug}".into());
        let m = map(vec![
            self_hosted,
            ServingRuleConfig::new("org/exact", "http://never.example/v1"),
            ServingRuleConfig::new("*/Affine-*", "https://{slug}.chutes.ai/v1"),
        ]);
        let t = m.resolve("org/exact", Some("r1")).unwrap();
        assert_eq!(
            (t.rule, t.base_url.as_str()),
            (0, "http://gpu.internal:8000/v1")
        );
        assert_eq!(t.model_name, "served-org-exact");
        let t = m.resolve("miner/Affine-5X", None).unwrap();
        assert_eq!(t.rule, 2);
        assert_eq!(t.base_url, "https://miner-affine-5x.chutes.ai/v1");
        assert_eq!(t.model_name, "miner/Affine-5X");
        let t = m.resolve("other/model", None).unwrap();
        assert_eq!((t.rule, &*t.pattern), (3, "*"));
        assert_eq!(t.base_url, "https://router.example/v1");
        // Globs match the whole id, case-sensitively.
        assert_eq!(m.resolve("ORG/x", None).unwrap().rule, 3);
        assert_eq!(m.resolve("xorg/x", None).unwrap().rule, 3);
    }

    #[test]
    fn a_rule_needing_a_revision_is_skipped_without_one() {
        let m = map(vec![ServingRuleConfig::new(
            "*",
            "http://h.internal/{revision}/v1",
        )]);
        let t = m.resolve("a/b", Some("abc")).unwrap();
        assert_eq!(
            (t.rule, t.base_url.as_str()),
            (0, "http://h.internal/abc/v1")
        );
        assert_eq!(m.resolve("a/b", None).unwrap().rule, 1);
    }

    #[test]
    fn views_hide_credentials() {
        let mut r = ServingRuleConfig::new("*", "https://user:pw@host.example/{slug}/v1");
        r.api_key = Some(Secret::new("sk-secret".into()));
        let m = map(vec![r]);
        let v = m.view("a/b", None).unwrap();
        assert_eq!(v.url, "https://host.example/a-b/v1");
        assert_eq!(v.pattern, "*");
        assert!(!format!("{v:?}").contains("sk-secret"));
        assert_eq!(
            m.resolve("a/b", None).unwrap().key().unwrap().expose(),
            "sk-secret"
        );
    }

    #[test]
    fn an_unread_key_variable_is_refused() {
        let mut r = ServingRuleConfig::new("*", "https://h.example/v1");
        r.api_key_env = Some("SOME_KEY".into());
        let mut c = Config {
            serving: vec![r],
            ..Config::default()
        };
        let e = ServingMap::new(&c, "https://d.example/v1", None).unwrap_err();
        assert!(e.contains("serving[0].api_key_env"), "{e}");
        c.resolve_serving_keys(|k| (k == "SOME_KEY").then(|| "k1".to_string()))
            .unwrap();
        let m = ServingMap::new(&c, "https://d.example/v1", None).unwrap();
        assert_eq!(
            m.resolve("a/b", None).unwrap().key().unwrap().expose(),
            "k1"
        );
    }
}
