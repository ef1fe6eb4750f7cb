//! Label and annotation maps: protobuf's `HashMap`, the runtime's
//! `BTreeMap` (ordered, so records and specs are stable).

use std::collections::{BTreeMap, HashMap};

pub(super) fn btree(m: &HashMap<String, String>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub(super) fn hash(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}
