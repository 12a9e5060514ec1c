//! Where the `loadbalancing` exporter's backend list comes from: `resolver.static` (a fixed
//! list, "resolved" once), `resolver.dns` (one hostname, all its addresses, re-resolved
//! every `interval`; a failed resolution keeps the last list) or `resolver.k8s` (the ready
//! endpoints of a Service's EndpointSlices, watched through the Kubernetes API; a failed
//! watch keeps the last list).
//!
//! DNS answers come through [`Lookup`], the system resolver (`getaddrinfo`, as the
//! Collector's Go resolver uses the system's) in production and a scripted one in tests.
//! EndpointSlices come from the shared Kubernetes client ([`oxcol_core::kube`]); this
//! module only reads them ([`EndpointSlice`], [`ServiceEndpoints`]). It only produces
//! endpoint lists; it never touches the ring or sends data.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Deserializer};

/// Answers "which addresses does this hostname have?".
pub trait Lookup: Send + Sync + 'static {
    fn lookup<'a>(&'a self, hostname: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, String>>;
}

/// The system resolver (A and AAAA records through getaddrinfo).
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup<'a>(&'a self, hostname: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, String>> {
        Box::pin(async move {
            let addresses = tokio::net::lookup_host((hostname, 0))
                .await
                .map_err(|e| format!("cannot resolve {hostname:?}: {e}"))?;
            Ok(addresses.map(|a| a.ip()).collect())
        })
    }
}

/// The ring names of the addresses of one DNS answer, as the Collector writes them:
/// `ip` or `[ipv6]`, followed by `:port` when a port is configured; sorted, de-duplicated.
pub fn dns_endpoints(addresses: &[IpAddr], port: Option<&str>) -> Vec<String> {
    let mut endpoints: Vec<String> = addresses
        .iter()
        .map(|ip| {
            let host = match ip {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("[{v6}]"),
            };
            match port {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    endpoints.sort();
    endpoints.dedup();
    endpoints
}

/// One DNS resolution bounded by `timeout`.
pub async fn resolve_dns(
    lookup: &Arc<dyn Lookup>,
    hostname: &str,
    port: Option<&str>,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    match tokio::time::timeout(timeout, lookup.lookup(hostname)).await {
        Ok(Ok(addresses)) => Ok(dns_endpoints(&addresses, port)),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(format!(
            "resolving {hostname:?} took longer than the timeout {timeout:?}"
        )),
    }
}

/// The address to connect to for a ring name: names without a port get the default
/// OTLP/gRPC port 4317 (the Collector's `endpointWithPort`).
pub fn endpoint_with_port(name: &str) -> String {
    let has_port = match name.rsplit_once(':') {
        Some((host, port)) => {
            port.parse::<u16>().is_ok() && (!host.contains(':') || host.ends_with(']'))
        }
        None => false,
    };
    if has_port {
        name.to_string()
    } else {
        format!("{name}:4317")
    }
}

/// The Service a `resolver.k8s` watches, from its `service` key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRef {
    pub name: String,
    pub namespace: String,
}

/// Reads `service` as the Collector does: `name` (in `own_namespace`, the pod's own
/// namespace, else `default`), `name.namespace`, or the FQDN
/// `name.namespace.svc.<cluster domain>`; anything else is refused.
pub fn parse_service(service: &str, own_namespace: Option<&str>) -> Result<ServiceRef, String> {
    let labels: Vec<&str> = service.split('.').collect();
    if service.is_empty() || labels.iter().any(|l| l.is_empty()) {
        return Err(if service.is_empty() {
            "resolver.k8s.service is required: the Service whose endpoints are the backends (name or name.namespace)".to_string()
        } else {
            format!(
                "resolver.k8s.service {service:?} has an empty label; write name, name.namespace or name.namespace.svc.<cluster domain>"
            )
        });
    }
    let namespace = match labels.len() {
        1 => own_namespace.unwrap_or("default").to_string(),
        2 => labels[1].to_string(),
        n if n >= 4 && labels[2] == "svc" => labels[1].to_string(),
        _ => {
            return Err(format!(
                "resolver.k8s.service {service:?} is not a valid Kubernetes service FQDN; write name, name.namespace or name.namespace.svc.<cluster domain>"
            ));
        }
    };
    let is_name = |label: &str| {
        label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !is_name(labels[0]) || !is_name(&namespace) {
        return Err(format!(
            "resolver.k8s.service {service:?}: a Service and a namespace name are lowercase letters, digits and '-' (at most 63)"
        ));
    }
    Ok(ServiceRef {
        name: labels[0].to_string(),
        namespace,
    })
}

/// The part of a `discovery.k8s.io/v1` EndpointSlice the resolver reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct EndpointSlice {
    pub metadata: SliceMetadata,
    #[serde(deserialize_with = "null_as_default")]
    pub endpoints: Vec<SliceEndpoint>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SliceMetadata {
    pub name: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SliceEndpoint {
    #[serde(deserialize_with = "null_as_default")]
    pub addresses: Vec<String>,
    pub conditions: SliceConditions,
    pub hostname: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SliceConditions {
    /// None means ready (the API contract: "nil should be interpreted as true").
    pub ready: Option<bool>,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The hosts one EndpointSlice contributes, and how many ready endpoints it had to leave
/// out because they have no hostname yet (with `return_hostnames`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SliceHosts {
    pub hosts: BTreeSet<String>,
    pub missing_hostnames: usize,
}

/// The hosts of the ready endpoints of `slice` (an endpoint whose `conditions.ready` is
/// explicitly false is left out): every address, or with `return_hostnames` the endpoint's
/// `hostname` (an endpoint without one is counted and left out, and picked up by a later
/// event once its hostname is set).
pub fn slice_hosts(slice: &EndpointSlice, return_hostnames: bool) -> SliceHosts {
    let mut out = SliceHosts::default();
    for endpoint in &slice.endpoints {
        if endpoint.conditions.ready == Some(false) || endpoint.addresses.is_empty() {
            continue;
        }
        if return_hostnames {
            match endpoint.hostname.as_deref().filter(|h| !h.is_empty()) {
                Some(hostname) => {
                    out.hosts.insert(hostname.to_string());
                }
                None => out.missing_hostnames += 1,
            }
        } else {
            out.hosts.extend(endpoint.addresses.iter().cloned());
        }
    }
    out
}

/// What `resolver.k8s` knows of its Service: the hosts of each of its EndpointSlices (a
/// Service has one per address family, and more past 100 endpoints).
#[derive(Clone, Debug, Default)]
pub struct ServiceEndpoints {
    slices: BTreeMap<String, BTreeSet<String>>,
}

impl ServiceEndpoints {
    /// Sets the hosts of one slice (an added or modified slice).
    pub fn set(&mut self, slice: &str, hosts: BTreeSet<String>) {
        self.slices.insert(slice.to_string(), hosts);
    }

    /// Forgets one slice (deleted).
    pub fn remove(&mut self, slice: &str) {
        self.slices.remove(slice);
    }

    /// Forgets every slice (before a full list is applied).
    pub fn clear(&mut self) {
        self.slices.clear();
    }

    /// The ring names, as the Collector writes them: `host:port` for every host and every
    /// port (`[ipv6]:port`), where a host is an address or, with `return_hostnames`,
    /// `<hostname>.<service>.<namespace>`; sorted, de-duplicated.
    pub fn endpoints(
        &self,
        service: &ServiceRef,
        ports: &[u16],
        return_hostnames: bool,
    ) -> Vec<String> {
        let hosts: BTreeSet<&String> = self.slices.values().flatten().collect();
        let mut endpoints = Vec::with_capacity(hosts.len() * ports.len());
        for host in hosts {
            let host = if return_hostnames {
                format!("{host}.{}.{}", service.name, service.namespace)
            } else if host.contains(':') {
                format!("[{host}]")
            } else {
                host.clone()
            };
            for port in ports {
                endpoints.push(format!("{host}:{port}"));
            }
        }
        endpoints.sort();
        endpoints.dedup();
        endpoints
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_answers_are_written_like_the_collector() {
        let addresses: Vec<IpAddr> = vec![
            "10.0.0.2".parse().unwrap(),
            "::1".parse().unwrap(),
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
        ];
        assert_eq!(
            dns_endpoints(&addresses, Some("4317")),
            vec!["10.0.0.1:4317", "10.0.0.2:4317", "[::1]:4317"]
        );
        assert_eq!(
            dns_endpoints(&addresses, None),
            vec!["10.0.0.1", "10.0.0.2", "[::1]"]
        );
    }

    #[test]
    fn default_port_is_added_only_when_missing() {
        assert_eq!(endpoint_with_port("backend-1"), "backend-1:4317");
        assert_eq!(endpoint_with_port("backend-1:55690"), "backend-1:55690");
        assert_eq!(endpoint_with_port("[::1]"), "[::1]:4317");
        assert_eq!(endpoint_with_port("[::1]:9000"), "[::1]:9000");
        assert_eq!(endpoint_with_port("10.0.0.1"), "10.0.0.1:4317");
    }

    struct Never;
    impl Lookup for Never {
        fn lookup<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, String>> {
            Box::pin(futures::future::pending())
        }
    }

    #[tokio::test]
    async fn a_slow_resolution_fails_at_the_timeout() {
        let lookup: Arc<dyn Lookup> = Arc::new(Never);
        let error = resolve_dns(&lookup, "gateways", None, Duration::from_millis(20))
            .await
            .unwrap_err();
        assert!(error.contains("timeout"), "{error}");
    }

    #[tokio::test]
    async fn the_system_resolver_resolves_localhost() {
        let lookup: Arc<dyn Lookup> = Arc::new(SystemLookup);
        let endpoints = resolve_dns(&lookup, "localhost", Some("4317"), Duration::from_secs(5))
            .await
            .unwrap();
        assert!(
            endpoints
                .iter()
                .any(|e| e == "127.0.0.1:4317" || e == "[::1]:4317"),
            "{endpoints:?}"
        );
    }

    #[test]
    fn service_names_are_read_like_the_collector() {
        let service = |s: &str, own: Option<&str>| parse_service(s, own);
        assert_eq!(
            service("lb", None).unwrap(),
            ServiceRef {
                name: "lb".into(),
                namespace: "default".into()
            }
        );
        assert_eq!(
            service("lb", Some("observability")).unwrap().namespace,
            "observability"
        );
        assert_eq!(
            service("lb.kube-public", Some("observability")).unwrap(),
            ServiceRef {
                name: "lb".into(),
                namespace: "kube-public".into()
            }
        );
        assert_eq!(
            service("lb.custom.svc.cluster.local", None).unwrap(),
            ServiceRef {
                name: "lb".into(),
                namespace: "custom".into()
            }
        );
        for bad in [
            "",
            "lb.kube-public.svc",
            "lb.kube-public.foo.bar",
            "lb..ns",
            "lb.ns?watch=1",
            "LB",
        ] {
            assert!(service(bad, None).is_err(), "{bad:?} accepted");
        }
        assert!(service("", None).unwrap_err().contains("required"));
    }

    /// An EndpointSlice as kube-apiserver serves it (the EndpointSlice controller's output
    /// for a headless Service of a StatefulSet with three pods, one of them not ready, and a
    /// fourth pod just created, before it has a hostname).
    const SLICE: &str = r#"{
      "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
      "metadata": {"name": "gateways-7xkq2", "namespace": "observability", "resourceVersion": "4711",
                   "labels": {"kubernetes.io/service-name": "gateways", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
      "addressType": "IPv4",
      "endpoints": [
        {"addresses": ["10.1.0.7"], "conditions": {"ready": true, "serving": true, "terminating": false},
         "hostname": "gateway-0", "targetRef": {"kind": "Pod", "namespace": "observability", "name": "gateway-0"}, "nodeName": "node-a"},
        {"addresses": ["10.1.0.9"], "conditions": {"ready": false, "serving": false, "terminating": true},
         "hostname": "gateway-1", "targetRef": {"kind": "Pod", "namespace": "observability", "name": "gateway-1"}},
        {"addresses": ["10.1.0.8"], "conditions": {}, "hostname": "gateway-2"},
        {"addresses": ["10.1.0.10"], "conditions": {"ready": true}}
      ],
      "ports": [{"name": "otlp-grpc", "protocol": "TCP", "port": 4317}]
    }"#;

    #[test]
    fn only_ready_endpoints_of_a_slice_are_backends() {
        let slice: EndpointSlice = serde_json::from_str(SLICE).unwrap();
        assert_eq!(slice.metadata.name, "gateways-7xkq2");
        let by_address = slice_hosts(&slice, false);
        assert_eq!(
            by_address.hosts.iter().collect::<Vec<_>>(),
            ["10.1.0.10", "10.1.0.7", "10.1.0.8"]
        );
        assert_eq!(by_address.missing_hostnames, 0);
        let by_name = slice_hosts(&slice, true);
        assert_eq!(
            by_name.hosts.iter().collect::<Vec<_>>(),
            ["gateway-0", "gateway-2"]
        );
        assert_eq!(
            by_name.missing_hostnames, 1,
            "10.1.0.10 has no hostname yet"
        );

        let empty: EndpointSlice = serde_json::from_str(
            r#"{"metadata": {"name": "e"}, "endpoints": null, "addressType": "IPv4"}"#,
        )
        .unwrap();
        assert!(slice_hosts(&empty, false).hosts.is_empty());
    }

    #[test]
    fn endpoints_are_every_host_times_every_port_sorted() {
        let service = ServiceRef {
            name: "gateways".into(),
            namespace: "observability".into(),
        };
        let slice: EndpointSlice = serde_json::from_str(SLICE).unwrap();
        let mut known = ServiceEndpoints::default();
        known.set("v4", slice_hosts(&slice, false).hosts);
        known.set("v6", ["fd00::7".to_string()].into());
        assert_eq!(
            known.endpoints(&service, &[4317, 14317], false),
            [
                "10.1.0.10:14317",
                "10.1.0.10:4317",
                "10.1.0.7:14317",
                "10.1.0.7:4317",
                "10.1.0.8:14317",
                "10.1.0.8:4317",
                "[fd00::7]:14317",
                "[fd00::7]:4317"
            ]
        );
        // The same address in two slices is one backend; a deleted slice takes its hosts.
        known.set("v4-copy", ["10.1.0.7".to_string()].into());
        known.remove("v6");
        assert_eq!(
            known.endpoints(&service, &[4317], false),
            ["10.1.0.10:4317", "10.1.0.7:4317", "10.1.0.8:4317"]
        );
        let mut named = ServiceEndpoints::default();
        named.set("v4", slice_hosts(&slice, true).hosts);
        assert_eq!(
            named.endpoints(&service, &[4317], true),
            [
                "gateway-0.gateways.observability:4317",
                "gateway-2.gateways.observability:4317"
            ]
        );
        named.clear();
        assert!(named.endpoints(&service, &[4317], true).is_empty());
    }
}
