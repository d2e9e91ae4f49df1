//! PURE, `now` is a parameter. Replica selection and passive health for one
//! `[balancer.NAME]` (SPEC §3, issue 4). Placeholder until the balancer lands.
