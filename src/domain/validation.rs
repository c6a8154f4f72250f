//! Input-validation vocabulary shared by every resource: violations with dotted field paths and a
//! tri-state `Field<T>` that tells "absent" from "null" (PATCH and channel-only rules need both).

use serde::{Deserialize, Deserializer};

/// One broken rule, with the dotted path of the input at fault (`cycles.max_iterations`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub message: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Collects violations so that a response lists every broken rule, not only the first.
#[derive(Debug, Default)]
pub struct Violations(Vec<Violation>);

impl Violations {
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Violation::new(field, message));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result(self) -> Result<(), Vec<Violation>> {
        if self.0.is_empty() { Ok(()) } else { Err(self.0) }
    }

    /// Runs `check` and records its violation, if any; returns the parsed value on success.
    pub fn check<T>(&mut self, result: Result<T, Violation>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(violation) => {
                self.0.push(violation);
                None
            }
        }
    }
}

/// A JSON field that may be absent, explicitly `null`, or carry a value.
/// Use with `#[serde(default)]` so that a missing key becomes `Absent`.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Field<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<T> Field<T> {
    pub fn is_present(&self) -> bool {
        !matches!(self, Field::Absent)
    }

    pub fn value(&self) -> Option<&T> {
        match self {
            Field::Value(v) => Some(v),
            _ => None,
        }
    }

    pub fn into_value(self) -> Option<T> {
        match self {
            Field::Value(v) => Some(v),
            _ => None,
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(deserializer)? {
            Some(v) => Field::Value(v),
            None => Field::Null,
        })
    }
}

/// Reads an integer as JSON Schema defines one: `5` and `5.0` alike (a number without a
/// fraction), so a client whose JSON library writes whole numbers as floats is not refused. Use
/// with `#[serde(deserialize_with = "whole_number")]`, or through [`WholeNumber`].
pub fn whole_number<'de, D: Deserializer<'de>, T: TryFrom<i64>>(deserializer: D) -> Result<T, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    // 2^63: the first float past i64's range.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    let whole = number.as_i64().or_else(|| number.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < LIMIT).map(|f| f as i64));
    whole
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| serde::de::Error::invalid_value(serde::de::Unexpected::Other(&number.to_string()), &"a whole number in range"))
}

/// An integer read by [`whole_number`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WholeNumber(pub i64);

impl<'de> Deserialize<'de> for WholeNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        whole_number(deserializer).map(WholeNumber)
    }
}

/// A JSON object read into `T`, and nothing else: serde reads a struct from an array too (its
/// fields by position), which would take `[["+52…", "Ana"]]` as a contact. Streams the object
/// into `T` (no intermediate value). Use through [`object_field`], [`objects`] and
/// [`optional_objects`].
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("an object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Object)
            }
        }
        deserializer.deserialize_map(ObjectVisitor(std::marker::PhantomData))
    }
}

/// A [`Field`] holding an object (see [`Object`]); with `#[serde(default, deserialize_with = …)]`.
pub fn object_field<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Field<T>, D::Error> {
    Ok(match Option::<Object<T>>::deserialize(deserializer)? {
        Some(Object(value)) => Field::Value(value),
        None => Field::Null,
    })
}

/// An array of objects (see [`Object`]).
pub fn objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Vec<T>, D::Error> {
    Ok(Vec::<Object<T>>::deserialize(deserializer)?.into_iter().map(|Object(value)| value).collect())
}

/// An optional array of objects (see [`Object`]); with `#[serde(default, deserialize_with = …)]`.
pub fn optional_objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<Vec<T>>, D::Error> {
    Ok(Option::<Vec<Object<T>>>::deserialize(deserializer)?.map(|items| items.into_iter().map(|Object(value)| value).collect()))
}

/// Checks an integer against an inclusive range, naming the field and the limits.
pub fn int_in_range(field: &str, value: i64, min: i64, max: i64) -> Result<i64, Violation> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(Violation::new(field, format!("{field} must be between {min} and {max}, got {value}")))
    }
}

/// Trims a required text and checks its length in characters.
pub fn text(field: &str, value: &str, min: usize, max: usize) -> Result<String, Violation> {
    no_nul(field, value)?;
    let trimmed = value.trim();
    let len = trimmed.chars().count();
    if len < min {
        return Err(Violation::new(field, format!("{field} must not be empty")));
    }
    if len > max {
        return Err(Violation::new(field, format!("{field} must be at most {max} characters, got {len}")));
    }
    Ok(trimmed.to_owned())
}

/// Checks the length of a free text that is kept as sent (no trimming).
pub fn max_chars(field: &str, value: &str, max: usize) -> Result<String, Violation> {
    no_nul(field, value)?;
    let len = value.chars().count();
    if len > max {
        return Err(Violation::new(field, format!("{field} must be at most {max} characters, got {len}")));
    }
    Ok(value.to_owned())
}

/// Text kept as text may not hold U+0000: PostgreSQL cannot store it (JSON kept as JSON, such as
/// `extracted_data` and tags, escapes it and takes it).
pub fn no_nul(field: &str, value: &str) -> Result<(), Violation> {
    if value.contains('\0') {
        return Err(Violation::new(field, format!("{field} holds the NUL character (U+0000), which text fields do not take")));
    }
    Ok(())
}

/// A required field: `Absent` and `Null` both violate it.
pub fn required<'a, T>(field: &str, value: &'a Field<T>) -> Result<&'a T, Violation> {
    match value {
        Field::Value(v) => Ok(v),
        Field::Absent => Err(Violation::new(field, format!("{field} is required"))),
        Field::Null => Err(Violation::new(field, format!("{field} must not be null"))),
    }
}
