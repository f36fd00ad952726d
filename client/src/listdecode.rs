//! Decoding a LIST response with each item transformed as soon as it is parsed (client-go's reflector applies an
//! informer's transform per item too): a list of thousands of objects never exists whole in memory when the
//! transform cuts each item down.

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// What is applied to each item.
pub type Transform = fn(&mut Value);

/// A list body (`{"kind": ..., "metadata": ..., "items": [...]}`) with `transform` applied to each item as parsed.
pub fn decode(body: &[u8], transform: Transform) -> serde_json::Result<Value> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let list = List(transform).deserialize(&mut de)?;
    de.end()?;
    Ok(list)
}

struct List(Transform);

impl<'de> DeserializeSeed<'de> for List {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for List {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value =
                if key == "items" { Value::Array(map.next_value_seed(Items(self.0))?) } else { map.next_value()? };
            if out.insert(key, value).is_some() {
                return Err(A::Error::custom("duplicate key in a list"));
            }
        }
        Ok(Value::Object(out))
    }
}

struct Items(Transform);

impl<'de> DeserializeSeed<'de> for Items {
    type Value = Vec<Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Value>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Items {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of items or null")
    }

    fn visit_unit<E>(self) -> Result<Vec<Value>, E> {
        Ok(Vec::new())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(mut item) = seq.next_element::<Value>()? {
            (self.0)(&mut item);
            out.push(item);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn drop_spec(v: &mut Value) {
        if let Some(m) = v.as_object_mut() {
            m.remove("spec");
        }
    }

    #[test]
    fn items_are_transformed_the_rest_kept() {
        let body = br#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"7"},"items":[{"metadata":{"name":"a"},"spec":{"x":1}},{"metadata":{"name":"b"}}]}"#;
        let list = decode(body, drop_spec).unwrap();
        assert_eq!(
            list,
            json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"},
                   "items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}]})
        );
        assert_eq!(decode(br#"{"items":null}"#, drop_spec).unwrap(), json!({"items": []}));
        assert!(decode(br#"{"items":[1,]}"#, drop_spec).is_err());
        assert!(decode(br#"{"items":[]} x"#, drop_spec).is_err());
    }
}
