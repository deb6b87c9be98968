//! The `entries` built-in policy, exported as a `ramrod:policy` component.
//! The logic lives in `ramrod-policies` so the host can run it natively too.

ramrod_policy_sdk::export_policy!(ramrod_policies::Entries);
