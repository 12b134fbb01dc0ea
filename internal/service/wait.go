package service

// Wait blocks until the worker stops the service started in the background
// (Cancel, CheckOnce's timeouts and orphan reaping, a launch whose record
// failed) have returned. A process that must not leave goroutines running
// after a unit of work calls it before ending that unit: an AWS Lambda
// container is frozen as soon as its handler returns. Call it only between
// units of work, not concurrently with the calls that start stops.
func (s *Service) Wait() { s.bg.Wait() }
