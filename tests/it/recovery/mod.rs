//! What happens when a process or a dependency goes away: SIGKILL and
//! restart, a rebalance, a bounded shutdown, an outage.

mod outage;
mod rebalance;
mod restart;
mod shutdown;
