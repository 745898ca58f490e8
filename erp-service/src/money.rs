//! Money: integer minor units of an ISO 4217 currency. The currency rule is the one both
//! services share (`tandem_proto::money`): a current ISO 4217 code with minor units.

pub use tandem_proto::money::{currency_problem, is_currency};
