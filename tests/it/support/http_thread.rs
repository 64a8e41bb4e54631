//! A small HTTP server of a test's own (actix-web on a thread with its own
//! system, loopback, a free port), stopped when dropped: the downstreams
//! and the OTLP receiver the tests talk to.

use std::net::SocketAddr;

use actix_web::body::MessageBody;
use actix_web::dev::{ServerHandle, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, Error, HttpServer};

pub struct HttpThread {
    pub addr: SocketAddr,
    server: ServerHandle,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl HttpThread {
    /// Serves the app `make` builds, with `workers` workers.
    pub fn start<F, T, B>(workers: usize, make: F) -> HttpThread
    where
        F: Fn() -> App<T> + Send + Clone + 'static,
        T: ServiceFactory<
                ServiceRequest,
                Config = (),
                Response = ServiceResponse<B>,
                Error = Error,
                InitError = (),
            > + 'static,
        B: MessageBody + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(make)
                    .workers(workers)
                    .max_connections(4096)
                    .disable_signals()
                    .bind("127.0.0.1:0")?;
                let addr = server.addrs()[0];
                let server = server.run();
                let _ = tx.send((addr, server.handle()));
                server.await
            })
        });
        let (addr, server) = rx.recv().expect("the test's HTTP server starts");
        HttpThread {
            addr,
            server,
            thread: Some(thread),
        }
    }
}

impl Drop for HttpThread {
    fn drop(&mut self) {
        futures::executor::block_on(self.server.stop(true));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
