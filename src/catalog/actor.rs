//! The daemon's access to the catalog: one thread owns the SQLite connection and
//! runs closures sent over a channel, so async code never blocks on SQLite.

use std::thread;

use crossbeam_channel::{unbounded, Sender};
use tokio::sync::oneshot;

use super::Catalog;

type Job = Box<dyn FnOnce(&mut Catalog) + Send>;

/// A cloneable handle to the catalog thread.
#[derive(Clone)]
pub struct CatalogHandle {
    jobs: Sender<Job>,
}

impl CatalogHandle {
    /// Moves `catalog` onto its own thread.
    pub fn spawn(mut catalog: Catalog) -> CatalogHandle {
        let (jobs, rx) = unbounded::<Job>();
        thread::Builder::new()
            .name("catalog".into())
            .spawn(move || {
                for job in rx {
                    job(&mut catalog);
                }
            })
            .expect("spawn catalog thread");
        CatalogHandle { jobs }
    }

    /// Runs `f` on the catalog thread and returns its result.
    pub async fn call<R, F>(&self, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(&mut Catalog) -> R + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |c| {
            let _ = tx.send(f(c));
        });
        self.jobs.send(job).expect("catalog thread is alive");
        rx.await.expect("catalog thread answered")
    }
}
