// Package dynamostore is the AWS jobstore.Driver: one DynamoDB item per
// job, keyed by job_id, in the table deploy/aws/terraform creates:
//
//	attribute     type  role
//	job_id        S     table key
//	owner         S     owner-created-index hash key (the API key's id)
//	created_at    S     range key of both indexes; fixed-width UTC, so
//	                    string order is time order
//	active        S     "1" only while provisioning or running: the sparse
//	                    active-index holds exactly the active jobs
//	idempotency   S     owner#key, only for submits with an Idempotency-Key
//	                    (sparse idempotency-index, for operators)
//	expires_at    N     epoch seconds; the table's TTL attribute
//	version       N     compare-and-set counter of every write
//	credentials   B     the sealed credentials blob (never clear text)
//	doc           S     the job record as JSON (authoritative)
//	worker_id     S     the job's worker; with attempts, the fence of a
//	attempts      N     worker's writes (Put's condition)
//	status, trace_id, instance_type, command, updated_at, error:
//	                    copies for operators reading the table
//
// Reads that decide are strongly consistent GetItems; List and Active
// Query the indexes (no Scan). Every write is conditional: Create on
// attribute_not_exists(job_id), Put on the stored version (and, for a
// worker's transition, on the stored worker_id and attempts). Put is an
// UpdateItem so the worker and provisioner roles need no PutItem.
//
// Idempotency-Key uniqueness cannot rest on an index (index reads are
// eventually consistent), so a submit with a key first claims a guard item
// job_id = "idem#"+sha256(owner, key) with a conditional put; concurrent
// retries lose that race and return the job the winner created.
//
// DeleteExpired does nothing: DynamoDB's TTL deletes expired items, and
// jobstore.Store hides them until it does.
package dynamostore

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore"
)

// Index names (as in deploy/aws/terraform/storage.tf).
const (
	IndexOwnerCreated = "owner-created-index"
	IndexActive       = "active-index"
	IndexIdempotency  = "idempotency-index"
)

// Attribute names.
const (
	attrJobID       = "job_id"
	attrOwner       = "owner"
	attrCreatedAt   = "created_at"
	attrActive      = "active"
	attrIdempotency = "idempotency"
	attrExpiresAt   = "expires_at"
	attrVersion     = "version"
	attrCredentials = "credentials"
	attrDoc         = "doc"
	attrTarget      = "target" // guard items: the job an idempotency key names
	attrWorkerID    = "worker_id"
	attrAttempts    = "attempts"
)

// timeLayout is fixed-width so that string order is time order.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

const guardPrefix = "idem#"

// API is the part of the DynamoDB client the driver uses.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
}

// Options configure a Driver.
type Options struct {
	// Now is the clock for idempotency guards (default time.Now).
	Now func() time.Time
	// GuardTakeover is how old a guard whose job never appeared must be
	// before another submit may take the key over (default 30 s).
	GuardTakeover time.Duration
	// GuardWait is how long a submit waits for the job of a young guard
	// to appear before it answers jobs.ErrConflict (default 5 s).
	GuardWait time.Duration
}

// Driver implements jobstore.Driver on one DynamoDB table.
type Driver struct {
	api   API
	table string
	opts  Options
}

var _ jobstore.Driver = (*Driver)(nil)

// New returns a driver on table.
func New(api API, table string, opts Options) (*Driver, error) {
	if api == nil {
		return nil, errors.New("dynamostore: nil DynamoDB client")
	}
	if table == "" {
		return nil, hint.Wrap(errors.New("dynamostore: no table name"), "set the jobs table name (Terraform's jobs_table_name) in the service configuration")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.GuardTakeover <= 0 {
		opts.GuardTakeover = 30 * time.Second
	}
	if opts.GuardWait <= 0 {
		opts.GuardWait = 5 * time.Second
	}
	return &Driver{api: api, table: table, opts: opts}, nil
}

// NewFromConfig builds the client from cfg (config.LoadDefaultConfig, so
// AWS_ENDPOINT_URL_DYNAMODB is honoured).
func NewFromConfig(cfg aws.Config, table string, opts Options) (*Driver, error) {
	return New(dynamodb.NewFromConfig(cfg), table, opts)
}

// Close releases nothing.
func (d *Driver) Close() error { return nil }

func s(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func n(v int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}

func fmtTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func ttl(t time.Time) int64 {
	sec := t.Unix()
	if t.Nanosecond() > 0 {
		sec++ // never expire a record before its ExpiresAt
	}
	return sec
}

// item renders j; optional attributes are left out when empty.
func item(j *jobs.Job) (map[string]types.AttributeValue, error) {
	doc, err := json.Marshal(j)
	if err != nil {
		return nil, fmt.Errorf("encode job %s: %w", j.ID, err)
	}
	it := map[string]types.AttributeValue{
		attrJobID:     s(j.ID),
		attrOwner:     s(j.Owner),
		attrCreatedAt: s(fmtTime(j.CreatedAt)),
		attrVersion:   n(j.Version),
		attrDoc:       s(string(doc)),
		"status":      s(string(j.Status)),
		"trace_id":    s(j.TraceID),
		"command":     s(string(j.Spec.Command)),
		"updated_at":  s(fmtTime(j.UpdatedAt)),
		attrAttempts:  n(int64(j.Attempts)),
	}
	if !j.ExpiresAt.IsZero() {
		it[attrExpiresAt] = n(ttl(j.ExpiresAt))
	}
	if j.Status.Active() {
		it[attrActive] = s("1")
	}
	if j.IdempotencyKey != "" {
		it[attrIdempotency] = s(j.Owner + "#" + j.IdempotencyKey)
	}
	if len(j.Credentials) > 0 {
		it[attrCredentials] = &types.AttributeValueMemberB{Value: j.Credentials}
	}
	for k, v := range map[string]string{attrWorkerID: j.WorkerID, "instance_type": j.InstanceType, "error": j.Error} {
		if v != "" {
			it[k] = s(v)
		}
	}
	return it, nil
}

// optionalAttrs lists the attributes item may leave out; Put removes them.
func optionalAttrs() []string {
	return []string{attrExpiresAt, attrActive, attrIdempotency, attrCredentials, attrWorkerID, "instance_type", "error"}
}

func decode(it map[string]types.AttributeValue) (*jobs.Job, error) {
	docAV, ok := it[attrDoc].(*types.AttributeValueMemberS)
	if !ok {
		return nil, jobs.ErrNotFound // a guard item, not a job
	}
	var j jobs.Job
	if err := json.Unmarshal([]byte(docAV.Value), &j); err != nil {
		return nil, fmt.Errorf("decode stored job: %w", err)
	}
	if v, ok := it[attrVersion].(*types.AttributeValueMemberN); ok {
		ver, err := strconv.ParseInt(v.Value, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("decode stored job %s: version %q: %w", j.ID, v.Value, err)
		}
		j.Version = ver
	}
	if b, ok := it[attrCredentials].(*types.AttributeValueMemberB); ok && len(b.Value) > 0 {
		j.Credentials = b.Value
	}
	return &j, nil
}

func isConditionFailed(err error) bool {
	var cf *types.ConditionalCheckFailedException
	return errors.As(err, &cf)
}

func (d *Driver) classify(err error) error {
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return hint.Wrap(err, fmt.Sprintf("create the DynamoDB table %s (deploy/aws/terraform does), or fix the table name in the configuration", d.table))
	}
	return err
}

func key(id string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{attrJobID: s(id)}
}

// Get reads one job with a strongly consistent read.
func (d *Driver) Get(ctx context.Context, id string) (*jobs.Job, error) {
	if id == "" || strings.HasPrefix(id, guardPrefix) {
		return nil, jobs.ErrNotFound
	}
	out, err := d.api.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(d.table), Key: key(id), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, d.classify(fmt.Errorf("dynamodb GetItem %s: %w", id, err))
	}
	if len(out.Item) == 0 {
		return nil, jobs.ErrNotFound
	}
	return decode(out.Item)
}

// Create inserts j unless its id, or its owner's idempotency key, is taken.
func (d *Driver) Create(ctx context.Context, j *jobs.Job) (*jobs.Job, error) {
	if strings.HasPrefix(j.ID, guardPrefix) {
		return nil, fmt.Errorf("job id %q uses a reserved prefix", j.ID)
	}
	it, err := item(j)
	if err != nil {
		return nil, err
	}
	guard := ""
	if j.IdempotencyKey != "" {
		guard = guardKey(j.Owner, j.IdempotencyKey)
		existing, err := d.claim(ctx, guard, j)
		if err != nil {
			return nil, err
		}
		if existing != nil {
			return existing, jobs.ErrDuplicate
		}
	}
	_, err = d.api.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                aws.String(d.table),
		Item:                     it,
		ConditionExpression:      aws.String("attribute_not_exists(#k)"),
		ExpressionAttributeNames: map[string]string{"#k": attrJobID},
	})
	if err == nil {
		return j, nil
	}
	if !isConditionFailed(err) {
		return nil, d.classify(fmt.Errorf("dynamodb PutItem %s: %w", j.ID, err))
	}
	// The id is taken by another job.
	if guard != "" {
		d.release(ctx, guard, j.ID)
	}
	existing, gerr := d.Get(ctx, j.ID)
	if gerr != nil {
		return nil, fmt.Errorf("job id %s is taken, and reading it failed: %w", j.ID, gerr)
	}
	return existing, jobs.ErrDuplicate
}

func guardKey(owner, idemKey string) string {
	h := sha256.Sum256([]byte(owner + "\x00" + idemKey))
	return guardPrefix + hex.EncodeToString(h[:])
}

// claim makes guard point at j, or returns the job it already names.
func (d *Driver) claim(ctx context.Context, guard string, j *jobs.Job) (*jobs.Job, error) {
	now := d.opts.Now()
	guardItem := map[string]types.AttributeValue{
		attrJobID:     s(guard),
		attrTarget:    s(j.ID),
		attrCreatedAt: s(fmtTime(now)),
	}
	if !j.ExpiresAt.IsZero() {
		guardItem[attrExpiresAt] = n(ttl(j.ExpiresAt))
	}
	deadline := time.Now().Add(d.opts.GuardWait)
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		_, err := d.api.PutItem(ctx, &dynamodb.PutItemInput{
			TableName:                aws.String(d.table),
			Item:                     guardItem,
			ConditionExpression:      aws.String("attribute_not_exists(#k)"),
			ExpressionAttributeNames: map[string]string{"#k": attrJobID},
		})
		if err == nil {
			return nil, nil
		}
		if !isConditionFailed(err) {
			return nil, d.classify(fmt.Errorf("dynamodb PutItem idempotency guard: %w", err))
		}
		out, err := d.api.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(d.table), Key: key(guard), ConsistentRead: aws.Bool(true)})
		if err != nil {
			return nil, d.classify(fmt.Errorf("dynamodb GetItem idempotency guard: %w", err))
		}
		if len(out.Item) == 0 {
			continue // expired and deleted meanwhile: claim again
		}
		target, _ := out.Item[attrTarget].(*types.AttributeValueMemberS)
		var since time.Time
		if c, ok := out.Item[attrCreatedAt].(*types.AttributeValueMemberS); ok {
			since, _ = time.Parse(timeLayout, c.Value)
		}
		old := ""
		if target != nil {
			old = target.Value
		}
		if old != "" {
			existing, err := d.Get(ctx, old)
			if err == nil {
				return existing, nil
			}
			if !errors.Is(err, jobs.ErrNotFound) {
				return nil, err
			}
		}
		// The guard names no job (released), or its job has not appeared:
		// the winner is between its two writes, or died there.
		if old == "" || d.opts.Now().Sub(since) > d.opts.GuardTakeover {
			if ok, err := d.takeOver(ctx, guard, old, j.ID); err != nil || ok {
				return nil, err
			}
			continue
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("idempotency key is held by a submit that has not finished (job %s); retry shortly: %w", old, jobs.ErrConflict)
		}
		if err := pause(ctx, wait); err != nil {
			return nil, err
		}
	}
}

func (d *Driver) takeOver(ctx context.Context, guard, old, id string) (bool, error) {
	_, err := d.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(d.table),
		Key:                       key(guard),
		UpdateExpression:          aws.String("SET #t = :new, #c = :now"),
		ConditionExpression:       aws.String("#t = :old"),
		ExpressionAttributeNames:  map[string]string{"#t": attrTarget, "#c": attrCreatedAt},
		ExpressionAttributeValues: map[string]types.AttributeValue{":new": s(id), ":old": s(old), ":now": s(fmtTime(d.opts.Now()))},
	})
	if err == nil {
		return true, nil
	}
	if isConditionFailed(err) {
		return false, nil
	}
	return false, d.classify(fmt.Errorf("dynamodb UpdateItem idempotency guard: %w", err))
}

// release frees a guard that points at a job that could not be created.
// Best effort: a guard left behind is taken over after GuardTakeover.
func (d *Driver) release(ctx context.Context, guard, id string) {
	_, _ = d.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(d.table),
		Key:                       key(guard),
		UpdateExpression:          aws.String("SET #t = :empty"),
		ConditionExpression:       aws.String("#t = :id"),
		ExpressionAttributeNames:  map[string]string{"#t": attrTarget},
		ExpressionAttributeValues: map[string]types.AttributeValue{":empty": s(""), ":id": s(id)},
	})
}

func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Put replaces the job's attributes if its stored version is expectVersion.
// A missing job fails the condition too, so it reports jobs.ErrConflict.
func (d *Driver) Put(ctx context.Context, j *jobs.Job, e jobstore.Expect) error {
	it, err := item(j)
	if err != nil {
		return err
	}
	delete(it, attrJobID)
	names := map[string]string{"#ver": attrVersion}
	values := map[string]types.AttributeValue{":expect": n(e.Version)}
	cond := "#ver = :expect"
	if e.Lease != nil {
		// A worker's write: the stored worker and attempt must still be
		// its own. Items written before attempts was an attribute carry
		// it only in doc; the version condition covers them.
		names["#wid"], names["#att"] = attrWorkerID, attrAttempts
		values[":wid"], values[":att"] = s(e.Lease.WorkerID), n(int64(e.Lease.Attempt))
		cond += " AND #wid = :wid AND (#att = :att OR attribute_not_exists(#att))"
	}
	var sets, removes []string
	i := 0
	for k, v := range it {
		i++
		nk, vk := fmt.Sprintf("#a%d", i), fmt.Sprintf(":v%d", i)
		switch k {
		case attrVersion:
			nk = "#ver"
		case attrWorkerID:
			if e.Lease != nil {
				nk = "#wid"
			}
		case attrAttempts:
			if e.Lease != nil {
				nk = "#att"
			}
		}
		names[nk] = k
		values[vk] = v
		sets = append(sets, nk+" = "+vk)
	}
	for _, k := range optionalAttrs() {
		if _, ok := it[k]; !ok {
			i++
			nk := fmt.Sprintf("#a%d", i)
			if k == attrWorkerID && e.Lease != nil {
				nk = "#wid"
			}
			names[nk] = k
			removes = append(removes, nk)
		}
	}
	expr := "SET " + strings.Join(sets, ", ")
	if len(removes) > 0 {
		expr += " REMOVE " + strings.Join(removes, ", ")
	}
	_, err = d.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(d.table),
		Key:                       key(j.ID),
		UpdateExpression:          aws.String(expr),
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: values,
	})
	if err != nil {
		if isConditionFailed(err) {
			if e.Lease != nil {
				return fmt.Errorf("job %s is not at version %d held by worker %s attempt %d: %w",
					j.ID, e.Version, e.Lease.WorkerID, e.Lease.Attempt, jobs.ErrConflict)
			}
			return fmt.Errorf("job %s is not at version %d: %w", j.ID, e.Version, jobs.ErrConflict)
		}
		return d.classify(fmt.Errorf("dynamodb UpdateItem %s: %w", j.ID, err))
	}
	return nil
}

// cursor is a page position: the index's LastEvaluatedKey.
type cursor struct {
	JobID     string `json:"j"`
	Owner     string `json:"o"`
	CreatedAt string `json:"c"`
}

func encodeCursor(lek map[string]types.AttributeValue) string {
	var c cursor
	if v, ok := lek[attrJobID].(*types.AttributeValueMemberS); ok {
		c.JobID = v.Value
	}
	if v, ok := lek[attrOwner].(*types.AttributeValueMemberS); ok {
		c.Owner = v.Value
	}
	if v, ok := lek[attrCreatedAt].(*types.AttributeValueMemberS); ok {
		c.CreatedAt = v.Value
	}
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(str, owner string) (map[string]types.AttributeValue, error) {
	b, err := base64.RawURLEncoding.DecodeString(str)
	if err != nil {
		return nil, jobstore.ErrInvalidCursor
	}
	var c cursor
	if err := json.Unmarshal(b, &c); err != nil || c.JobID == "" || c.Owner != owner {
		return nil, jobstore.ErrInvalidCursor
	}
	if _, err := time.Parse(timeLayout, c.CreatedAt); err != nil {
		return nil, jobstore.ErrInvalidCursor
	}
	return map[string]types.AttributeValue{attrJobID: s(c.JobID), attrOwner: s(c.Owner), attrCreatedAt: s(c.CreatedAt)}, nil
}

// maxQueriesPerPage bounds the Queries one List makes when a status filter
// leaves pages short; the caller then gets a short page and a cursor.
const maxQueriesPerPage = 10

// List pages through one owner's jobs, newest first, on owner-created-index.
func (d *Driver) List(ctx context.Context, q jobstore.ListQuery) ([]*jobs.Job, string, error) {
	var start map[string]types.AttributeValue
	if q.Cursor != "" {
		c, err := decodeCursor(q.Cursor, q.Owner)
		if err != nil {
			return nil, "", err
		}
		start = c
	}
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(d.table),
		IndexName:                 aws.String(IndexOwnerCreated),
		KeyConditionExpression:    aws.String("#o = :o"),
		ExpressionAttributeNames:  map[string]string{"#o": attrOwner},
		ExpressionAttributeValues: map[string]types.AttributeValue{":o": s(q.Owner)},
		ScanIndexForward:          aws.Bool(false),
	}
	if q.Status != "" {
		in.FilterExpression = aws.String("#s = :s")
		in.ExpressionAttributeNames["#s"] = "status"
		in.ExpressionAttributeValues[":s"] = s(string(q.Status))
	}
	var page []*jobs.Job
	for i := 0; i < maxQueriesPerPage && len(page) < q.Limit; i++ {
		in.Limit = aws.Int32(int32(q.Limit - len(page)))
		in.ExclusiveStartKey = start
		out, err := d.api.Query(ctx, in)
		if err != nil {
			return nil, "", d.classify(fmt.Errorf("dynamodb Query %s for owner: %w", IndexOwnerCreated, err))
		}
		for _, it := range out.Items {
			j, err := decode(it)
			if err != nil {
				return nil, "", err
			}
			page = append(page, j)
		}
		start = out.LastEvaluatedKey
		if len(start) == 0 {
			return page, "", nil
		}
	}
	return page, encodeCursor(start), nil
}

// Active lists provisioning and running jobs from the sparse active-index.
func (d *Driver) Active(ctx context.Context) ([]*jobs.Job, error) {
	p := dynamodb.NewQueryPaginator(d.api, &dynamodb.QueryInput{
		TableName:                 aws.String(d.table),
		IndexName:                 aws.String(IndexActive),
		KeyConditionExpression:    aws.String("#a = :one"),
		ExpressionAttributeNames:  map[string]string{"#a": attrActive},
		ExpressionAttributeValues: map[string]types.AttributeValue{":one": s("1")},
	})
	var out []*jobs.Job
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, d.classify(fmt.Errorf("dynamodb Query %s: %w", IndexActive, err))
		}
		for _, it := range page.Items {
			j, err := decode(it)
			if err != nil {
				return nil, err
			}
			out = append(out, j)
		}
	}
	return out, nil
}

// DeleteExpired is a no-op: the table's TTL on expires_at deletes expired
// jobs (and idempotency guards); jobstore.Store hides them meanwhile.
func (d *Driver) DeleteExpired(context.Context, time.Time) (int, error) { return 0, nil }
