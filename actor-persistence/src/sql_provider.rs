//! The statements' execution shared by the SQL providers (SQLite and
//! PostgreSQL): state rows with ETag checks and event streams with version
//! checks. Only the SQL text (`Statements`), the pool type, how a
//! transaction begins and how an operation is bounded differ between them;
//! each provider supplies those (`sql`, `pool`, `url` fields, `err`,
//! `begin`, `bounded`) and invokes [`sql_provider!`] once.

/// Implements the state-row and event-stream operations and the
/// `StorageProvider` and `EventStore` traits for a SQL provider type.
macro_rules! sql_provider {
    ($ty:ident) => {
        impl $ty {
            async fn current_etag(&self, key: &StateKey) -> Result<Option<ETag>> {
                let row = sqlx::query(&self.sql.etag)
                    .bind(key.grain_type())
                    .bind(key.grain_id())
                    .bind(key.name())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(row.map(|r| ETag::from(r.get::<String, _>(0))))
            }

            async fn read_row(&self, key: &StateKey) -> Result<Option<StoredState>> {
                let row = sqlx::query(&self.sql.read)
                    .bind(key.grain_type())
                    .bind(key.grain_id())
                    .bind(key.name())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(row.map(|r| StoredState {
                    data: r.get(0),
                    etag: ETag::from(r.get::<String, _>(1)),
                }))
            }

            async fn write_row(
                &self,
                key: &StateKey,
                data: &[u8],
                expected: Option<&ETag>,
            ) -> Result<ETag> {
                let etag = ETag::generate();
                if let Some(expected) = expected
                    && self.batch.on
                {
                    // An update: committed together with the updates other
                    // grains issue meanwhile (see `group_commit`).
                    let sent = self.batch.submit(key, data, expected, etag.clone());
                    if sent.start_writer {
                        let writer = self.clone();
                        tokio::spawn(async move { writer.write_batches().await });
                    }
                    return match sent.outcome.await {
                        Ok(Ok(true)) => Ok(etag),
                        Ok(Ok(false)) => Err(Error::Conflict {
                            key: key.to_string(),
                            expected: Some(expected.clone()),
                            actual: self.current_etag(key).await?,
                        }),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err($crate::group_commit::writer_gone(PROVIDER, &self.url)),
                    };
                }
                let query = match expected {
                    None => sqlx::query(&self.sql.insert),
                    Some(_) => sqlx::query(&self.sql.update),
                };
                let mut query = query
                    .bind(key.grain_type())
                    .bind(key.grain_id())
                    .bind(key.name())
                    .bind(etag.as_str())
                    .bind(data);
                if let Some(expected) = expected {
                    query = query.bind(expected.as_str());
                }
                let done = query.execute(&self.pool).await.map_err(|e| self.err(e))?;
                if done.rows_affected() == 1 {
                    Ok(etag)
                } else {
                    Err(Error::Conflict {
                        key: key.to_string(),
                        expected: expected.cloned(),
                        actual: self.current_etag(key).await?,
                    })
                }
            }

            /// The group-commit writer: runs the queued updates batch by
            /// batch until the queue is empty (then the next update starts
            /// a new writer).
            async fn write_batches(&self) {
                let mut writing = $crate::group_commit::Writing::new(&self.batch);
                loop {
                    let batch = self.batch.next_batch();
                    if batch.is_empty() {
                        writing.done = true;
                        return;
                    }
                    let outcome = self.bounded(self.update_batch(&batch)).await;
                    $crate::group_commit::answer_all(batch, outcome);
                }
            }

            async fn clear_row(&self, key: &StateKey, expected: Option<&ETag>) -> Result<()> {
                let Some(expected) = expected else {
                    return match self.current_etag(key).await? {
                        None => Ok(()),
                        actual => Err(Error::Conflict {
                            key: key.to_string(),
                            expected: None,
                            actual,
                        }),
                    };
                };
                let done = sqlx::query(&self.sql.delete)
                    .bind(key.grain_type())
                    .bind(key.grain_id())
                    .bind(key.name())
                    .bind(expected.as_str())
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.err(e))?;
                if done.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err(Error::Conflict {
                        key: key.to_string(),
                        expected: Some(expected.clone()),
                        actual: self.current_etag(key).await?,
                    })
                }
            }

            async fn stream_version(&self, stream: &StateKey) -> Result<u64> {
                let v: i64 = sqlx::query_scalar(&self.sql.events_version)
                    .bind(stream.grain_type())
                    .bind(stream.grain_id())
                    .bind(stream.name())
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(v.max(0) as u64)
            }

            async fn conflict(&self, stream: &StateKey, expected: u64) -> Error {
                match self.stream_version(stream).await {
                    Ok(actual) => Error::VersionConflict {
                        stream: stream.to_string(),
                        expected,
                        actual,
                    },
                    Err(e) => e,
                }
            }

            async fn append_events(
                &self,
                stream: &StateKey,
                expected: u64,
                events: &[Vec<u8>],
            ) -> Result<u64> {
                let Some((first, rest)) = events.split_first() else {
                    let actual = self.stream_version(stream).await?;
                    return if actual == expected {
                        Ok(actual)
                    } else {
                        Err(Error::VersionConflict {
                            stream: stream.to_string(),
                            expected,
                            actual,
                        })
                    };
                };
                let mut tx = self.begin().await?;
                // The first row carries the version check; the primary key
                // (stream, version) makes one of two racing appends fail.
                let first = sqlx::query(&self.sql.events_append_first)
                    .bind(stream.grain_type())
                    .bind(stream.grain_id())
                    .bind(stream.name())
                    .bind($crate::sql_provider::to_i64(expected + 1))
                    .bind(first.as_slice())
                    .bind($crate::sql_provider::to_i64(expected))
                    .execute(&mut *tx)
                    .await;
                match first {
                    Ok(done) if done.rows_affected() == 1 => {}
                    Ok(_) => {
                        drop(tx);
                        return Err(self.conflict(stream, expected).await);
                    }
                    Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                        drop(tx);
                        return Err(self.conflict(stream, expected).await);
                    }
                    Err(e) => return Err(self.err(e)),
                }
                for (i, event) in rest.iter().enumerate() {
                    sqlx::query(&self.sql.events_insert)
                        .bind(stream.grain_type())
                        .bind(stream.grain_id())
                        .bind(stream.name())
                        .bind($crate::sql_provider::to_i64(expected + 2 + i as u64))
                        .bind(event.as_slice())
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.err(e))?;
                }
                tx.commit().await.map_err(|e| self.err(e))?;
                Ok(expected + events.len() as u64)
            }

            async fn events_after(
                &self,
                stream: &StateKey,
                after: u64,
            ) -> Result<Vec<StoredEvent>> {
                let rows = sqlx::query(&self.sql.events_read)
                    .bind(stream.grain_type())
                    .bind(stream.grain_id())
                    .bind(stream.name())
                    .bind($crate::sql_provider::to_i64(after))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(rows
                    .into_iter()
                    .map(|r| StoredEvent {
                        version: r.get::<i64, _>(0).max(0) as u64,
                        data: r.get(1),
                    })
                    .collect())
            }

            async fn snapshot(&self, stream: &StateKey) -> Result<Option<Snapshot>> {
                let row = sqlx::query(&self.sql.snapshot_read)
                    .bind(stream.grain_type())
                    .bind(stream.grain_id())
                    .bind(stream.name())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(row.map(|r| Snapshot {
                    version: r.get::<i64, _>(0).max(0) as u64,
                    data: r.get(1),
                }))
            }

            async fn store_snapshot(&self, stream: &StateKey, snapshot: &Snapshot) -> Result<()> {
                sqlx::query(&self.sql.snapshot_write)
                    .bind(stream.grain_type())
                    .bind(stream.grain_id())
                    .bind(stream.name())
                    .bind($crate::sql_provider::to_i64(snapshot.version))
                    .bind(snapshot.data.as_slice())
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(())
            }
        }

        impl StorageProvider for $ty {
            fn describe(&self) -> String {
                self.url.to_string()
            }

            fn read<'a>(&'a self, key: &'a StateKey) -> BoxFuture<'a, Result<Option<StoredState>>> {
                Box::pin(self.bounded(self.read_row(key)))
            }

            fn write<'a>(
                &'a self,
                key: &'a StateKey,
                data: &'a [u8],
                expected: Option<&'a ETag>,
            ) -> BoxFuture<'a, Result<ETag>> {
                Box::pin(self.bounded(self.write_row(key, data, expected)))
            }

            fn clear<'a>(
                &'a self,
                key: &'a StateKey,
                expected: Option<&'a ETag>,
            ) -> BoxFuture<'a, Result<()>> {
                Box::pin(self.bounded(self.clear_row(key, expected)))
            }
        }

        impl EventStore for $ty {
            fn describe(&self) -> String {
                self.url.to_string()
            }

            fn read_events<'a>(
                &'a self,
                stream: &'a StateKey,
                after: u64,
            ) -> BoxFuture<'a, Result<Vec<StoredEvent>>> {
                Box::pin(self.bounded(self.events_after(stream, after)))
            }

            fn version<'a>(&'a self, stream: &'a StateKey) -> BoxFuture<'a, Result<u64>> {
                Box::pin(self.bounded(self.stream_version(stream)))
            }

            fn append<'a>(
                &'a self,
                stream: &'a StateKey,
                expected: u64,
                events: &'a [Vec<u8>],
            ) -> BoxFuture<'a, Result<u64>> {
                Box::pin(self.bounded(self.append_events(stream, expected, events)))
            }

            fn read_snapshot<'a>(
                &'a self,
                stream: &'a StateKey,
            ) -> BoxFuture<'a, Result<Option<Snapshot>>> {
                Box::pin(self.bounded(self.snapshot(stream)))
            }

            fn write_snapshot<'a>(
                &'a self,
                stream: &'a StateKey,
                snapshot: &'a Snapshot,
            ) -> BoxFuture<'a, Result<()>> {
                Box::pin(self.bounded(self.store_snapshot(stream, snapshot)))
            }
        }
    };
}

pub(crate) use sql_provider;

/// Versions are `u64` in the API and `BIGINT` in the tables.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
