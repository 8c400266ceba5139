//! Decoding of the scripts' named replies.
//!
//! Every script returns a flat array of name/value pairs (`{"fresh", 1, "account", …}`), and
//! nested lists of such arrays where a value is per scope. Pairs rather than `cjson` because
//! they cost nothing to build in Lua nor to read here (RESP integers and bulk strings, no JSON
//! pass on either side), and because `cjson` prints numbers with 14 significant digits by
//! default: a bucket level or a count stays exact as a RESP integer, and money, which can pass
//! 2^53 where a Lua number (a double) rounds, travels as a decimal string either way.
//!
//! A missing, repeated or unknown field, or a value of the wrong type, is a
//! [`StoreError::Protocol`] naming the script and the field: a script and its decoder out of
//! step must fail loudly, never decode a neighbour's value.

use ::redis::Value;

use crate::store::StoreError;

/// One script reply's fields, taken one by one; [`Fields::finish`] refuses any left over.
pub(super) struct Fields {
    script: &'static str,
    /// Names as the bytes Redis sent: compared, never allocated.
    pairs: Vec<(Vec<u8>, Value)>,
}

impl Fields {
    /// Reads the name/value pairs of `value`, the reply of `script`.
    pub(super) fn new(script: &'static str, value: Value) -> Result<Fields, StoreError> {
        let Value::Array(items) = value else {
            return Err(protocol(
                script,
                format_args!("expected an array, got {value:?}"),
            ));
        };
        if items.len() % 2 != 0 {
            return Err(protocol(
                script,
                format_args!("{} values are not name/value pairs", items.len()),
            ));
        }
        let mut pairs: Vec<(Vec<u8>, Value)> = Vec::with_capacity(items.len() / 2);
        let mut items = items.into_iter();
        while let (Some(name), Some(value)) = (items.next(), items.next()) {
            let name = match name {
                Value::BulkString(b) => b,
                Value::SimpleString(s) => s.into_bytes(),
                other => {
                    return Err(protocol(script, format_args!("a field name is {other:?}")));
                }
            };
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(protocol(
                    script,
                    format_args!("field `{}` twice", String::from_utf8_lossy(&name)),
                ));
            }
            pairs.push((name, value));
        }
        Ok(Fields { script, pairs })
    }

    /// The raw value of field `name`; an error when absent.
    pub(super) fn take(&mut self, name: &str) -> Result<Value, StoreError> {
        match self.pairs.iter().position(|(n, _)| n == name.as_bytes()) {
            Some(i) => Ok(self.pairs.swap_remove(i).1),
            None => Err(protocol(
                self.script,
                format_args!("field `{name}` missing"),
            )),
        }
    }

    /// Field `name` as a type `redis` can convert to.
    pub(super) fn get<T: ::redis::FromRedisValue>(&mut self, name: &str) -> Result<T, StoreError> {
        let v = self.take(name)?;
        ::redis::from_redis_value(v)
            .map_err(|e| protocol(self.script, format_args!("field `{name}`: {e}")))
    }

    /// Field `name` as a non-negative integer (a count, a level, milliseconds). A negative
    /// value reads as 0, as the positional decoder of the v2 scripts did (the scripts floor
    /// what they report at 0, so none is expected).
    pub(super) fn count(&mut self, name: &str) -> Result<u64, StoreError> {
        let v: i64 = self.get(name)?;
        Ok(u64::try_from(v).unwrap_or(0))
    }

    /// Field `name`, a decimal string of rao, as an integer.
    pub(super) fn money(&mut self, name: &str) -> Result<i64, StoreError> {
        let s: String = self.get(name)?;
        s.parse().map_err(|_| {
            protocol(
                self.script,
                format_args!("field `{name}`: `{s}` is not an integer"),
            )
        })
    }

    /// Field `name`, itself a name/value array; `None` when it is empty (Lua cannot tell an
    /// empty table from an empty list).
    pub(super) fn nested_one(&mut self, name: &str) -> Result<Option<Fields>, StoreError> {
        let script = self.script;
        match self.take(name)? {
            Value::Array(items) if items.is_empty() => Ok(None),
            v @ Value::Array(_) => Fields::new(script, v).map(Some),
            other => Err(protocol(
                script,
                format_args!("field `{name}`: expected a list, got {other:?}"),
            )),
        }
    }

    /// An error for a field whose value is of the right type but not one the decoder knows.
    pub(super) fn unexpected(&self, name: &str, value: &str) -> StoreError {
        protocol(
            self.script,
            format_args!("field `{name}` has an unknown value `{value}`"),
        )
    }

    /// Succeeds when every field was taken: a field the decoder does not know means the
    /// script and the decoder disagree.
    pub(super) fn finish(self) -> Result<(), StoreError> {
        match self.pairs.first() {
            None => Ok(()),
            Some((name, _)) => Err(protocol(
                self.script,
                format_args!("unknown field `{}`", String::from_utf8_lossy(name)),
            )),
        }
    }
}

fn protocol(script: &str, what: std::fmt::Arguments<'_>) -> StoreError {
    StoreError::Protocol(format!("{script} script reply: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::BulkString(x.as_bytes().to_vec())
    }

    fn reply(items: Vec<Value>) -> Fields {
        Fields::new("test", Value::Array(items)).unwrap()
    }

    #[test]
    fn fields_are_read_by_name_in_any_order() {
        let mut f = reply(vec![s("b"), s("12"), s("a"), Value::Int(3)]);
        assert_eq!(f.count("a").unwrap(), 3);
        assert_eq!(f.money("b").unwrap(), 12);
        f.finish().unwrap();
    }

    #[test]
    fn money_above_2_pow_53_stays_exact() {
        let big = "9007199254740993";
        let mut f = reply(vec![s("m"), s(big)]);
        assert_eq!(f.money("m").unwrap(), 9_007_199_254_740_993);
    }

    #[test]
    fn missing_unknown_and_repeated_fields_are_protocol_errors() {
        let mut f = reply(vec![s("a"), Value::Int(1)]);
        let e = f.count("b").unwrap_err().to_string();
        assert!(e.contains("field `b` missing"), "{e}");

        let f = reply(vec![s("a"), Value::Int(1)]);
        let e = f.finish().unwrap_err().to_string();
        assert!(e.contains("unknown field `a`"), "{e}");

        let e = Fields::new(
            "t",
            Value::Array(vec![s("a"), Value::Int(1), s("a"), Value::Int(2)]),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("twice"), "{e}");

        let e = Fields::new("t", Value::Array(vec![s("a")]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("name/value pairs"), "{e}");
    }

    #[test]
    fn wrong_types_are_protocol_errors() {
        let mut f = reply(vec![
            s("n"),
            s("x"),
            s("m"),
            s("1.5"),
            s("l"),
            Value::Int(2),
        ]);
        assert!(matches!(f.count("n"), Err(StoreError::Protocol(_))));
        assert!(matches!(f.money("m"), Err(StoreError::Protocol(_))));
        assert!(matches!(f.nested_one("l"), Err(StoreError::Protocol(_))));
    }
}
