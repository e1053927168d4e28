//! The input of a transaction (Go's `mtransaction.Transaction`, "the DSL"), read from the
//! queue message and written back as the JSON the reference ledger keeps in `transaction.body`
//! for PENDING transactions.
//!
//! Reading uses the Go field names (the msgpack keys); writing uses the `json` tags of the same
//! struct, with Go's `encoding/json` rules: `omitempty` drops empty strings, false, zero
//! integers and nil pointers, slices and maps, but never a struct (so decimals, which are
//! structs in Go, are always written, as quoted strings).

use serde::{Deserialize, Serialize};

use crate::message::{Decimal, fields};

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn is_empty_map(m: &Option<serde_json::Map<String, serde_json::Value>>) -> bool {
    m.as_ref().is_none_or(|m| m.is_empty())
}

/// A decimal that is never nil in Go (`decimal.Decimal`, not a pointer): zero when absent.
#[derive(Clone, Debug, PartialEq)]
pub struct GoDecimal(pub Decimal);

impl Default for GoDecimal {
    fn default() -> Self {
        Self(Decimal::from_i64(0))
    }
}

impl<'de> Deserialize<'de> for GoDecimal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Option::<Decimal>::deserialize(d)?.map_or_else(Self::default, Self))
    }
}

impl Serialize for GoDecimal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

#[derive(Deserialize, Serialize, Default)]
pub struct Dsl {
    #[serde(
        rename(
            deserialize = "ChartOfAccountsGroupName",
            serialize = "chartOfAccountsGroupName"
        ),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub chart_of_accounts_group_name: String,
    #[serde(
        rename(deserialize = "Description", serialize = "description"),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub description: String,
    #[serde(
        rename(deserialize = "Code", serialize = "code"),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub code: String,
    #[serde(
        rename(deserialize = "Pending", serialize = "pending"),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub pending: bool,
    #[serde(
        rename(deserialize = "Metadata", serialize = "metadata"),
        default,
        skip_serializing_if = "is_empty_map"
    )]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(
        rename(deserialize = "Route", serialize = "route"),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub route: String,
    #[serde(
        rename(deserialize = "RouteID", serialize = "routeId"),
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub route_id: Option<String>,
    /// A named `time.Time` without exported fields: Go's msgpack encoder writes it as an empty
    /// map, so the date is lost on the wire; a present one prints as `null`.
    #[serde(
        rename(deserialize = "TransactionDate", serialize = "transactionDate"),
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub transaction_date: Option<Lost>,
    #[serde(
        rename(deserialize = "Send", serialize = "send"),
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub send: Send,
    #[serde(
        rename(deserialize = "Skip", serialize = "skip"),
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub skip: Option<Skip>,
}

impl Dsl {
    /// Go's `IsEmpty`: no asset and a zero value.
    pub fn is_empty(&self) -> bool {
        self.send.asset.is_empty() && self.send.value.0.is_zero()
    }

    /// The JSON the reference ledger stores, with metadata numbers as Go prints them.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("the DSL serializes to JSON");
        go_numbers(&mut value);
        value
    }
}

/// A value whose content the wire does not carry.
#[derive(Default)]
pub struct Lost;

impl<'de> Deserialize<'de> for Lost {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Lost)
    }
}

impl Serialize for Lost {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

#[derive(Deserialize, Serialize, Default)]
pub struct Send {
    #[serde(
        rename(deserialize = "Asset", serialize = "asset"),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub asset: String,
    #[serde(rename(deserialize = "Value", serialize = "value"), default)]
    pub value: GoDecimal,
    #[serde(
        rename(deserialize = "Source", serialize = "source"),
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub source: Source,
    #[serde(
        rename(deserialize = "Distribute", serialize = "distribute"),
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub distribute: Distribute,
}

#[derive(Deserialize, Serialize, Default)]
pub struct Source {
    #[serde(
        rename(deserialize = "Remaining", serialize = "remaining"),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub remaining: String,
    #[serde(
        rename(deserialize = "From", serialize = "from"),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub from: Vec<FromTo>,
}

#[derive(Deserialize, Serialize, Default)]
pub struct Distribute {
    #[serde(
        rename(deserialize = "Remaining", serialize = "remaining"),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub remaining: String,
    #[serde(
        rename(deserialize = "To", serialize = "to"),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub to: Vec<FromTo>,
}

#[derive(Deserialize, Serialize, Default)]
pub struct FromTo {
    #[serde(
        rename(deserialize = "AccountAlias", serialize = "accountAlias"),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub account_alias: String,
    #[serde(
        rename(deserialize = "BalanceKey", serialize = "balanceKey"),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub balance_key: String,
    #[serde(
        rename(deserialize = "Amount", serialize = "amount"),
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub amount: Option<Amount>,
    #[serde(
        rename(deserialize = "Share", serialize = "share"),
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub share: Option<Share>,
    #[serde(
        rename(deserialize = "Remaining", serialize = "remaining"),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub remaining: String,
    #[serde(
        rename(deserialize = "Rate", serialize = "rate"),
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub rate: Option<Rate>,
    #[serde(
        rename(deserialize = "Description", serialize = "description"),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub description: String,
    #[serde(
        rename(deserialize = "ChartOfAccounts", serialize = "chartOfAccounts"),
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub chart_of_accounts: String,
    /// No `omitempty` in Go: nil prints as `null`.
    #[serde(rename(deserialize = "Metadata", serialize = "metadata"), default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(
        rename(deserialize = "IsFrom", serialize = "isFrom"),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub is_from: bool,
    #[serde(
        rename(deserialize = "Route", serialize = "route"),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub route: String,
    #[serde(
        rename(deserialize = "RouteID", serialize = "routeId"),
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub route_id: Option<String>,
}

#[derive(Deserialize, Serialize, Default)]
pub struct Amount {
    #[serde(
        rename(deserialize = "Asset", serialize = "asset"),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub asset: String,
    #[serde(rename(deserialize = "Value", serialize = "value"), default)]
    pub value: GoDecimal,
    #[serde(
        rename(deserialize = "Operation", serialize = "operation"),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub operation: String,
    #[serde(
        rename(deserialize = "TransactionType", serialize = "transactionType"),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub transaction_type: String,
    #[serde(
        rename(deserialize = "Direction", serialize = "direction"),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub direction: String,
    #[serde(
        rename(
            deserialize = "RouteValidationEnabled",
            serialize = "routeValidationEnabled"
        ),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub route_validation_enabled: bool,
    #[serde(
        rename(deserialize = "OverdraftAmount", serialize = "overdraftAmount"),
        default
    )]
    pub overdraft_amount: GoDecimal,
}

#[derive(Deserialize, Serialize, Default)]
pub struct Share {
    #[serde(
        rename(deserialize = "Percentage", serialize = "percentage"),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "is_zero"
    )]
    pub percentage: i64,
    #[serde(
        rename(
            deserialize = "PercentageOfPercentage",
            serialize = "percentageOfPercentage"
        ),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "is_zero"
    )]
    pub percentage_of_percentage: i64,
}

#[derive(Deserialize, Serialize, Default)]
pub struct Rate {
    #[serde(
        rename(deserialize = "From", serialize = "from"),
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub from: String,
    #[serde(
        rename(deserialize = "To", serialize = "to"),
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub to: String,
    #[serde(rename(deserialize = "Value", serialize = "value"), default)]
    pub value: GoDecimal,
    #[serde(
        rename(deserialize = "ExternalID", serialize = "externalId"),
        default,
        deserialize_with = "fields::null_as_default"
    )]
    pub external_id: String,
}

#[derive(Deserialize, Serialize, Default)]
pub struct Skip {
    #[serde(
        rename(deserialize = "Fees", serialize = "fees"),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub fees: bool,
    #[serde(
        rename(deserialize = "Tracer", serialize = "tracer"),
        default,
        deserialize_with = "fields::null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub tracer: bool,
}

/// Go prints a whole float64 without a fraction (`42`, not `42.0`); metadata numbers arrive as
/// float64, so print them the same way to keep the stored JSON identical.
fn go_numbers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64())
                && f.fract() == 0.0
                && f.abs() < 1e15
            {
                *n = serde_json::Number::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(go_numbers),
        Value::Object(map) => map.values_mut().for_each(go_numbers),
        _ => {}
    }
}
