//! The `loadbalance` plugin: shuffles the address (and MX) records of an answer so clients spread over them
//! (CoreDNS's round-robin policy), keeping CNAMEs first.

use hickory_proto::rr::{Record, RecordType};
use rand::seq::SliceRandom;

use super::{Answer, BoxFuture, Next, Plugin, Setup};
use crate::corefile::Directive;
use crate::request::Request;

pub struct LoadBalance;

/// CoreDNS's `roundRobin`: CNAMEs, then the shuffled addresses, then MX records, then the rest.
pub fn round_robin(records: Vec<Record>) -> Vec<Record> {
    if records.len() < 2 {
        return records;
    }
    let (mut cname, mut address, mut mx, mut rest) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in records {
        match r.record_type() {
            RecordType::CNAME => cname.push(r),
            RecordType::A | RecordType::AAAA => address.push(r),
            RecordType::MX => mx.push(r),
            _ => rest.push(r),
        }
    }
    let mut rng = rand::rng();
    address.shuffle(&mut rng);
    mx.shuffle(&mut rng);
    cname.extend(address);
    cname.extend(mx);
    cname.extend(rest);
    cname
}

impl Plugin for LoadBalance {
    fn name(&self) -> &'static str {
        "loadbalance"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let mut m = next.serve(req).await?;
            m.answers = round_robin(std::mem::take(&mut m.answers));
            m.additionals = round_robin(std::mem::take(&mut m.additionals));
            Ok(m)
        })
    }
}

/// `loadbalance [round_robin]`.
pub fn setup(d: &Directive, s: &mut Setup<'_>) -> Result<LoadBalance, String> {
    match d.args.as_slice() {
        [] => {}
        [p] if p == "round_robin" => {}
        [p, ..] => return Err(s.err(d, d.line, format!("unknown policy: {p}"))),
    }
    if let Some(l) = d.block.first() {
        return Err(s.err(d, l.line, format!("unknown property '{}'", l.tokens[0])));
    }
    Ok(LoadBalance)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, CNAME};
    use hickory_proto::rr::{Name, RData};

    #[test]
    fn keeps_cnames_first_and_shuffles_addresses() {
        let n = Name::from_ascii("a.example.").unwrap();
        let mut records = vec![Record::from_rdata(n.clone(), 5, RData::CNAME(CNAME(n.clone())))];
        for i in 0..20u8 {
            records.push(Record::from_rdata(n.clone(), 5, RData::A(A::new(10, 0, 0, i))));
        }
        let mut orders = std::collections::HashSet::new();
        for _ in 0..10 {
            let out = round_robin(records.clone());
            assert_eq!(out[0].record_type(), RecordType::CNAME);
            assert_eq!(out.len(), 21);
            orders.insert(format!("{:?}", out.iter().map(|r| r.data.clone()).collect::<Vec<_>>()));
        }
        assert!(orders.len() > 1, "the addresses were never reordered");
    }
}
