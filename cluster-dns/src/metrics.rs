//! The process's Prometheus registry with CoreDNS's metric names and labels (`coredns_dns_requests_total`,
//! `coredns_dns_request_duration_seconds`, `coredns_cache_*`, `coredns_proxy_*`, ...). As CoreDNS's default
//! registry it is global: every server block's plugins record into it and the `prometheus` plugin serves it.

use std::sync::{Arc, LazyLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A label value shared by many series (server address, zone).
pub type Shared = Arc<String>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub server: Shared,
    pub zone: Shared,
    pub view: &'static str,
    pub proto: &'static str,
    pub family: &'static str,
    pub r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    pub server: Shared,
    pub zone: Shared,
    pub view: &'static str,
    pub r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SizeLabels {
    pub server: Shared,
    pub zone: Shared,
    pub view: &'static str,
    pub proto: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResponseLabels {
    pub server: Shared,
    pub zone: Shared,
    pub view: &'static str,
    pub rcode: &'static str,
    pub plugin: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub server: Shared,
    pub zone: Shared,
    pub view: &'static str,
    pub name: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub server: Shared,
    pub r#type: &'static str,
    pub zones: Shared,
    pub view: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheZoneLabels {
    pub server: Shared,
    pub zones: Shared,
    pub view: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProxyLabels {
    pub proxy_name: &'static str,
    pub to: Shared,
    pub rcode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProxyToLabels {
    pub proxy_name: &'static str,
    pub to: Shared,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
    pub revision: &'static str,
    pub goversion: &'static str,
}

/// Every metric cluster-dns exports.
pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub responses: Family<ResponseLabels, Counter>,
    pub request_duration: Family<DurationLabels, Histogram>,
    pub request_size: Family<SizeLabels, Histogram>,
    pub response_size: Family<SizeLabels, Histogram>,
    pub plugin_enabled: Family<PluginLabels, Gauge>,
    pub panics: Counter,
    pub build_info: Family<BuildLabels, Gauge>,
    pub cache_entries: Family<CacheLabels, Gauge>,
    pub cache_hits: Family<CacheLabels, Counter>,
    pub cache_misses: Family<CacheZoneLabels, Counter>,
    pub cache_requests: Family<CacheZoneLabels, Counter>,
    pub proxy_duration: Family<ProxyLabels, Histogram>,
    pub proxy_healthcheck_failures: Family<ProxyToLabels, Counter>,
    pub forward_healthcheck_broken: Counter,
    pub forward_max_concurrent_rejects: Counter,
    pub hosts_entries: Gauge,
    pub reload_failed: Counter,
}

fn duration_buckets() -> Histogram {
    // CoreDNS's plugin.TimeBuckets: exponential from 0.25 ms, 16 buckets.
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

fn size_buckets() -> Histogram {
    // CoreDNS's plugin.SizeBuckets.
    Histogram::new([0.0, 100.0, 200.0, 300.0, 400.0, 511.0, 1023.0, 2047.0, 4095.0, 8291.0, 16e3, 32e3, 48e3, 64e3])
}

fn proxy_buckets() -> Histogram {
    // CoreDNS's proxy: prometheus.ExponentialBuckets(0.00025, 2, 16).
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            requests: Family::default(),
            responses: Family::default(),
            request_duration: Family::new_with_constructor(duration_buckets as fn() -> Histogram),
            request_size: Family::new_with_constructor(size_buckets as fn() -> Histogram),
            response_size: Family::new_with_constructor(size_buckets as fn() -> Histogram),
            plugin_enabled: Family::default(),
            panics: Counter::default(),
            build_info: Family::default(),
            cache_entries: Family::default(),
            cache_hits: Family::default(),
            cache_misses: Family::default(),
            cache_requests: Family::default(),
            proxy_duration: Family::new_with_constructor(proxy_buckets as fn() -> Histogram),
            proxy_healthcheck_failures: Family::default(),
            forward_healthcheck_broken: Counter::default(),
            forward_max_concurrent_rejects: Counter::default(),
            hosts_entries: Gauge::default(),
            reload_failed: Counter::default(),
            registry: Registry::default(),
        };
        // prometheus-client appends `_total` to counters itself.
        registry.register(
            "coredns_dns_requests",
            "Counter of DNS requests made per zone, protocol and family.",
            m.requests.clone(),
        );
        registry.register("coredns_dns_responses", "Counter of response status codes.", m.responses.clone());
        registry.register(
            "coredns_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took per zone.",
            m.request_duration.clone(),
        );
        registry.register(
            "coredns_dns_request_size_bytes",
            "Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol.",
            m.request_size.clone(),
        );
        registry.register(
            "coredns_dns_response_size_bytes",
            "Size of the returned response in bytes.",
            m.response_size.clone(),
        );
        registry.register(
            "coredns_plugin_enabled",
            "A metric that indicates whether a plugin is enabled on per server and zone basis.",
            m.plugin_enabled.clone(),
        );
        registry.register("coredns_panics", "A metrics that counts the number of panics.", m.panics.clone());
        registry.register(
            "coredns_build_info",
            "A metric with a constant '1' value labeled by version, revision, and goversion from which CoreDNS was built.",
            m.build_info.clone(),
        );
        registry.register("coredns_cache_entries", "The number of elements in the cache.", m.cache_entries.clone());
        registry.register("coredns_cache_hits", "The count of cache hits.", m.cache_hits.clone());
        registry.register(
            "coredns_cache_misses",
            "The count of cache misses. Deprecated, derive misses from cache hits/requests counters.",
            m.cache_misses.clone(),
        );
        registry.register("coredns_cache_requests", "The count of cache requests.", m.cache_requests.clone());
        registry.register(
            "coredns_proxy_request_duration_seconds",
            "Histogram of the time each request took.",
            m.proxy_duration.clone(),
        );
        registry.register(
            "coredns_proxy_healthcheck_failures",
            "Counter of the number of failed healthchecks.",
            m.proxy_healthcheck_failures.clone(),
        );
        registry.register(
            "coredns_forward_healthcheck_broken",
            "Counter of the number of complete failures of the healthchecks.",
            m.forward_healthcheck_broken.clone(),
        );
        registry.register(
            "coredns_forward_max_concurrent_rejects",
            "Counter of the number of queries rejected because the concurrent queries were at maximum.",
            m.forward_max_concurrent_rejects.clone(),
        );
        registry.register(
            "coredns_hosts_entries",
            "The combined number of entries in hosts and Corefile.",
            m.hosts_entries.clone(),
        );
        registry.register(
            "coredns_reload_failed",
            "Counter of the number of failed reload attempts.",
            m.reload_failed.clone(),
        );
        m.build_info
            .get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION"), revision: "", goversion: "rust" })
            .set(1);
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        out.push_str("# EOF\n");
        out
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// CoreDNS's `vars.qTypeString`-like label: the monitored record types by name, the rest as "other".
pub fn qtype_label(t: hickory_proto::rr::RecordType) -> &'static str {
    use hickory_proto::rr::RecordType as T;
    match t {
        T::A => "A",
        T::AAAA => "AAAA",
        T::NS => "NS",
        T::CNAME => "CNAME",
        T::SOA => "SOA",
        T::PTR => "PTR",
        T::MX => "MX",
        T::TXT => "TXT",
        T::SRV => "SRV",
        T::NAPTR => "NAPTR",
        T::DS => "DS",
        T::DNSKEY => "DNSKEY",
        T::RRSIG => "RRSIG",
        T::NSEC => "NSEC",
        T::NSEC3 => "NSEC3",
        T::HINFO => "HINFO",
        T::TLSA => "TLSA",
        T::SVCB => "SVCB",
        T::HTTPS => "HTTPS",
        T::CAA => "CAA",
        T::ANY => "ANY",
        T::AXFR => "AXFR",
        T::IXFR => "IXFR",
        _ => "other",
    }
}

/// The rcode's name as CoreDNS's `dns.RcodeToString`.
pub fn rcode_label(r: hickory_proto::op::ResponseCode) -> &'static str {
    use hickory_proto::op::ResponseCode as R;
    match r {
        R::NoError => "NOERROR",
        R::FormErr => "FORMERR",
        R::ServFail => "SERVFAIL",
        R::NXDomain => "NXDOMAIN",
        R::NotImp => "NOTIMP",
        R::Refused => "REFUSED",
        R::YXDomain => "YXDOMAIN",
        R::YXRRSet => "YXRRSET",
        R::NXRRSet => "NXRRSET",
        R::NotAuth => "NOTAUTH",
        R::NotZone => "NOTZONE",
        R::BADVERS => "BADVERS",
        _ => "OTHER",
    }
}
