//! Small activities the pass cases share.

use saga_runtime::activity::ActivityRegistration;
use saga_runtime::prelude::*;

/// `n * 2`.
#[activity]
pub async fn double(n: u64) -> Result<u64, ActivityError> {
    Ok(n * 2)
}

/// `n + 1`, compensated by [`undo_add`].
#[activity(compensate = undo_add)]
pub async fn add_one(n: u64) -> Result<u64, ActivityError> {
    Ok(n + 1)
}

/// Undoes [`add_one`].
#[activity]
pub async fn undo_add(_n: u64) -> Result<(), ActivityError> {
    Ok(())
}

/// `n`, or a non-retryable failure when `n` is a multiple of 7.
#[activity(retry = RetryPolicy::none())]
pub async fn not_seven(n: u64) -> Result<u64, ActivityError> {
    if n.is_multiple_of(7) {
        Err(ActivityError::non_retryable(format!(
            "{n} is a multiple of 7"
        )))
    } else {
        Ok(n)
    }
}

/// `"hello <name>"`.
#[activity]
pub async fn greet(name: String) -> Result<String, ActivityError> {
    Ok(format!("hello {name}"))
}

/// Every activity above, for `Script::activities`.
pub fn all() -> Vec<fn() -> ActivityRegistration> {
    vec![
        activity::<double>,
        activity::<add_one>,
        activity::<undo_add>,
        activity::<not_seven>,
        activity::<greet>,
    ]
}

#[cfg(test)]
mod tests {
    use saga_runtime::prelude::*;

    /// Runs only on the workers serving `vault`.
    #[activity(task_queue = "vault", timeout = "5s")]
    async fn vaulted(n: u64) -> Result<u64, ActivityError> {
        Ok(n)
    }

    #[test]
    fn task_queue_goes_into_the_options() {
        let options = <vaulted as Activity>::options();
        assert_eq!(options.task_queue.as_deref(), Some("vault"));
        assert_eq!(
            options.start_to_close_timeout,
            Some(std::time::Duration::from_secs(5))
        );
        assert_eq!(<super::double as Activity>::options().task_queue, None);
    }
}
