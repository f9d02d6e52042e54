/*-------------------------------------------------------------------------
 *
 * batch.c
 *		bank.transfer_batch: many transfers of a payment rail in one call,
 *		one result per item.
 *
 * Semantics (what a bank client may rely on):
 *	- The batch is checked whole before anything is written: a JSON array of
 *	  1 to BATCH_MAX_ITEMS objects, each with from_account and to_account
 *	  (integer ids), amount (a decimal string of the currency's units, or an
 *	  integer of minor units), idempotency_key, and optionally description
 *	  and metadata; no other field, no key twice.  Otherwise PB026 (PB027
 *	  when too large) and nothing happens.
 *	- Each item is exactly a bank.transfer (same checks, same fingerprint,
 *	  same audit row), run in a subtransaction of its own.  A decline (funds,
 *	  frozen, closed) rolls the item back and is recorded as a failed
 *	  transfer, with its audit row, in the batch's own transaction: it rests
 *	  on what the batch's earlier items wrote, so it commits with them or not
 *	  at all.  Any other pgbank error (class PB: an unknown account, a key
 *	  reused for another payload, too many fraction digits, KYC) refuses that
 *	  item only and records nothing.  Any other error (a timeout, a
 *	  cancellation, an internal error) fails the whole batch.
 *	- Idempotent per item: an item whose key has its transfer (from this or
 *	  an earlier batch, or a bank.transfer with the same key and payload)
 *	  returns it, posted or failed, marked replayed.
 *
 * Locks, in order: every item's idempotency key (transaction advisory
 * locks, in key order), then the items in ascending order of (debited
 * customer, currency, debited account).  Each item locks its customer's
 * risk counters row in that currency (risk.c, before any account), then its
 * debited account FOR NO KEY UPDATE, both until the batch ends (its credit
 * takes FOR KEY SHARE, which conflicts with neither).  So concurrent batches
 * take counters rows and accounts in one global order and cannot deadlock on
 * each other (specs/batch_lock_order.spec; specs/batch_customer_order.spec
 * for a customer whose accounts lie on both sides of another customer's,
 * which ordering by account alone would deadlock); a single transfer takes
 * one counters row and then one account, so it cannot close a cycle with a
 * batch either.  A declined item's subtransaction releases its locks.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/tuplestore.h"

#include "pgbank.h"

#define BATCH_MAX_ITEMS 1000

typedef struct BatchItem
{
	int			item;			/* 1-based position in the batch */
	int64		from_account;
	int64		debit_customer; /* from_account's customer (0: none or unknown) */
	char		debit_currency[4];	/* and currency: its risk counters row */
	int64		to_account;
	Numeric		amount;			/* a decimal string; NULL: amount_minor */
	int64		amount_minor;
	char	   *key;
	char	   *description;
	Jsonb	   *metadata;		/* NULL: {} */
	/* the outcome */
	int64		transfer_id;	/* 0: none */
	const char *status;			/* NULL: nothing recorded */
	char	   *code;
	char	   *message;
	bool		replayed;
} BatchItem;

static void
BatchInvalid(int item, const char *fmt,...) pg_attribute_printf(2, 3);

/* PB026, naming the item */
static void
BatchInvalid(int item, const char *fmt,...)
{
	va_list		ap;
	char		buf[512];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	ereport(ERROR,
			(errcode(ERRCODE_PGB_INVALID_BATCH),
			 errmsg("item %d: %s", item, buf)));
}

/* a JSON number's text when it is an integer (an optional minus, digits) */
static char *
IntegerText(const JsonbValue *v)
{
	char	   *s;
	const char *p;

	if (v->type != jbvNumeric)
		return NULL;
	s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	p = s[0] == '-' ? s + 1 : s;
	if (*p == '\0' || strspn(p, "0123456789") != strlen(p))
		return NULL;
	return s;
}

static int64
AccountField(int item, const char *name, const JsonbValue *v)
{
	char	   *s = IntegerText(v);
	char	   *end;
	long long	id;

	errno = 0;
	if (s == NULL || s[0] == '-' || strlen(s) > 18 ||
		(id = strtoll(s, &end, 10)) <= 0 || errno != 0)
		BatchInvalid(item, "%s must be a positive integer id", name);
	return (int64) id;
}

/*
 * amount: a decimal string ("10.50") kept as numeric, checked against the
 * currency by the engine; or an integer of minor units, checked per item
 * (positive, at most 10^15).  A fraction or an exponent in a JSON number,
 * or any other string, is malformed.
 */
static void
AmountField(int item, const JsonbValue *v, BatchItem *it)
{
	if (v->type == jbvString)
	{
		char	   *s = pnstrdup(v->val.string.val, v->val.string.len);
		size_t		ip = strspn(s, "0123456789");
		size_t		fp = s[ip] == '.' ? strspn(s + ip + 1, "0123456789") : 0;

		if (ip == 0 || ip > 20 || fp > 20 ||
			(s[ip] != '\0' && (s[ip] != '.' || fp == 0 || s[ip + 1 + fp] != '\0')))
			BatchInvalid(item, "amount must be a decimal string such as \"10.50\" or an integer of minor units");
		it->amount = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(s),
														 ObjectIdGetDatum(InvalidOid),
														 Int32GetDatum(-1)));
		return;
	}
	{
		char	   *s = IntegerText(v);

		if (s == NULL)
			BatchInvalid(item, "amount must be a decimal string such as \"10.50\" or an integer of minor units");
		/* the value's own checks come per item: not positive, or too large */
		if (s[0] == '-')
			it->amount_minor = 0;
		else if (strlen(s) > 18)
			it->amount_minor = PG_INT64_MAX;
		else
			it->amount_minor = strtoll(s, NULL, 10);
	}
}

static char *
StringField(int item, const char *name, const JsonbValue *v)
{
	if (v->type != jbvString)
		BatchInvalid(item, "%s must be a string", name);
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* one item of the batch, checked */
static void
ParseItem(int item, JsonbValue *elem, BatchItem *it)
{
	JsonbIterator *iter;
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;
	bool		have_from = false,
				have_to = false,
				have_amount = false;

	memset(it, 0, sizeof(*it));
	it->item = item;
	if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
		BatchInvalid(item, "an item must be a JSON object");
	iter = JsonbIteratorInit(elem->val.binary.data);
	while ((tok = JsonbIteratorNext(&iter, &k, true)) != WJB_DONE)
	{
		char	   *name;

		if (tok != WJB_KEY)
			continue;
		name = pnstrdup(k.val.string.val, k.val.string.len);
		tok = JsonbIteratorNext(&iter, &v, true);
		Assert(tok == WJB_VALUE);
		if (strcmp(name, "description") == 0 || strcmp(name, "metadata") == 0)
		{
			if (v.type == jbvNull)
				continue;
			if (name[0] == 'd')
			{
				it->description = StringField(item, name, &v);
				PgbCheckLength("description", it->description, 0, PGB_MAX_TEXT_CHARS);
			}
			else
			{
				if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
					BatchInvalid(item, "metadata must be a JSON object");
				it->metadata = JsonbValueToJsonb(&v);
				(void) TransferMetadata(it->metadata);
			}
			continue;
		}
		if (v.type == jbvNull)
			BatchInvalid(item, "%s is required", name);
		if (strcmp(name, "from_account") == 0)
			it->from_account = AccountField(item, name, &v), have_from = true;
		else if (strcmp(name, "to_account") == 0)
			it->to_account = AccountField(item, name, &v), have_to = true;
		else if (strcmp(name, "amount") == 0)
			AmountField(item, &v, it), have_amount = true;
		else if (strcmp(name, "idempotency_key") == 0)
			it->key = StringField(item, name, &v);
		else
			BatchInvalid(item, "unknown field %s", name);
	}
	if (!have_from)
		BatchInvalid(item, "from_account is required");
	if (!have_to)
		BatchInvalid(item, "to_account is required");
	if (!have_amount)
		BatchInvalid(item, "amount is required");
	if (it->key == NULL)
		BatchInvalid(item, "idempotency_key is required");
}

/* the customer and currency of each item's debited account (as the engine reads) */
static PgbQuery q_debit_owners = {
	"SELECT id, coalesce(customer_id, 0), currency::text FROM bank.accounts WHERE id = ANY ($1)",
	1, {INT8ARRAYOID}
};

static void
DebitOwners(BatchItem *items, int n)
{
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum		v[1];
	int			rows;

	for (int i = 0; i < n; i++)
	{
		ids[i] = Int64GetDatum(items[i].from_account);
		items[i].debit_customer = 0;
		items[i].debit_currency[0] = '\0';
	}
	v[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	rows = PgbExec(&q_debit_owners, v, NULL, true, 0);
	for (int r = 0; r < rows; r++)
	{
		int64		id = PgbGetInt64(r, 1);
		int64		customer = PgbGetInt64(r, 2);
		char	   *currency = PgbGetText(r, 3);

		for (int i = 0; i < n; i++)
			if (items[i].from_account == id)
			{
				items[i].debit_customer = customer;
				strlcpy(items[i].debit_currency, currency, sizeof(items[i].debit_currency));
			}
	}
}

static int
CompareKeys(const void *a, const void *b)
{
	const BatchItem *x = *(BatchItem *const *) a;
	const BatchItem *y = *(BatchItem *const *) b;

	return strcmp(x->key, y->key);
}

static int
CompareDebits(const void *a, const void *b)
{
	const BatchItem *x = *(BatchItem *const *) a;
	const BatchItem *y = *(BatchItem *const *) b;
	int			c;

	if (x->debit_customer != y->debit_customer)
		return x->debit_customer < y->debit_customer ? -1 : 1;
	if ((c = strcmp(x->debit_currency, y->debit_currency)) != 0)
		return c;
	if (x->from_account != y->from_account)
		return x->from_account < y->from_account ? -1 : 1;
	return x->item - y->item;
}

/*
 * Run one item as a transfer in a subtransaction; record its outcome in it.
 * Errors of class PB become the item's outcome; any other is re-thrown.
 */
static void
RunItem(const Principal *who, BatchItem *it)
{
	PgbSubxact	sx;
	MoveDecline *decline = palloc0(sizeof(MoveDecline));
	MoveRequest req = {0};

	req.kind = "transfer";
	req.debit_account = it->from_account;
	req.credit_account = it->to_account;
	req.amount = it->amount;
	req.idempotency_key = it->key;
	req.description = it->description;
	req.metadata = TransferMetadata(it->metadata);
	req.who = *who;
	req.decline_to = decline;

	PgbSubxactBegin(&sx);
	PG_TRY();
	{
		TransferRow t;

		if (req.amount == NULL)
			req.amount_minor = MoneyCheckMinor(it->amount_minor);
		EngineMove(&req, &t);
		if (!req.replayed)
			AuditTransfer(who, "transfer.create", &t);
		EngineAssertSettled();
		PgbSubxactCommit(&sx);
		it->transfer_id = t.id;
		it->status = pstrdup(t.status);
		it->code = t.failure_code ? pstrdup(t.failure_code) : NULL;
		it->message = t.failure_message ? pstrdup(t.failure_message) : NULL;
		it->replayed = req.replayed;
	}
	PG_CATCH();
	{
		ErrorData  *edata = PgbSubxactAbort(&sx);

		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) !=
			ERRCODE_TO_CATEGORY(ERRCODE_PGB_INVALID_BATCH))
			ReThrowError(edata);
		it->code = pstrdup(unpack_sql_state(edata->sqlerrcode));
		it->message = edata->message;
		if (decline->declined)
		{
			it->transfer_id = EngineRecordDecline(who, decline);
			it->status = "failed";
		}
	}
	PG_END_TRY();
}

PG_FUNCTION_INFO_V1(pgbank_transfer_batch);
Datum
pgbank_transfer_batch(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Jsonb	   *jb;
	int			n,
				i,
				posted = 0,
				declined = 0,
				refused = 0;
	BatchItem  *items;
	BatchItem **order;
	Principal	who;
	IdemKey		idem;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_NULL_ARGUMENT), errmsg("items must not be null")));
	AuthCaller("transfer_batch", &who);
	EngineRequireReadCommitted();
	jb = PG_GETARG_JSONB_P(0);
	if (!JB_ROOT_IS_ARRAY(jb) || JB_ROOT_IS_SCALAR(jb))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_BATCH),
				 errmsg("a batch must be a JSON array of items")));
	n = JB_ROOT_COUNT(jb);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_BATCH), errmsg("a batch must have at least one item")));
	if (n > BATCH_MAX_ITEMS)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_BATCH_TOO_LARGE),
				 errmsg("a batch has at most %d items, not %d", BATCH_MAX_ITEMS, n),
				 errhint("Split it into several batches.")));

	/* everything checked before anything is written */
	items = palloc(sizeof(BatchItem) * n);
	order = palloc(sizeof(BatchItem *) * n);
	for (i = 0; i < n; i++)
	{
		ParseItem(i + 1, getIthJsonbValueFromContainer(&jb->root, i), &items[i]);
		order[i] = &items[i];
	}
	qsort(order, n, sizeof(BatchItem *), CompareKeys);
	for (i = 1; i < n; i++)
		if (strcmp(order[i - 1]->key, order[i]->key) == 0)
			BatchInvalid(Max(order[i - 1]->item, order[i]->item),
						 "idempotency_key is also that of item %d",
						 Min(order[i - 1]->item, order[i]->item));

	/* the keys, in key order, for the whole batch */
	for (i = 0; i < n; i++)
	{
		IdemPrepare(&idem, order[i]->key, &who);
		IdemLock(&idem);
	}

	/* the items, in the order of the locks they take (see the header) */
	SPI_connect();
	DebitOwners(items, n);
	qsort(order, n, sizeof(BatchItem *), CompareDebits);
	for (i = 0; i < n; i++)
	{
		BatchItem  *it = order[i];

		RunItem(&who, it);
		if (it->replayed)
			continue;
		if (it->status == NULL)
			refused++;
		else if (strcmp(it->status, "failed") == 0)
			declined++;
		else
			posted++;
	}
	if (posted + declined > 0)
		AuditWrite(&who, 0, "transfer.batch", "batch", NULL,
				   psprintf("{\"items\": %d, \"posted\": %d, \"declined\": %d, \"refused\": %d}",
							n, posted, declined, refused));

	/* one row per item, in item order (their outcomes live in SPI memory) */
	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < n; i++)
	{
		BatchItem  *it = &items[i];
		Datum		v[7];
		bool		nulls[7] = {false};

		v[0] = Int32GetDatum(it->item);
		v[1] = CStringGetTextDatum(it->key);
		v[2] = Int64GetDatum(it->transfer_id);
		nulls[2] = it->transfer_id == 0;
		nulls[3] = it->status == NULL;
		if (it->status)
			v[3] = OidFunctionCall3(F_ENUM_IN, CStringGetDatum(it->status),
									ObjectIdGetDatum(TupleDescAttr(rsinfo->setDesc, 3)->atttypid),
									Int32GetDatum(-1));
		v[4] = it->code ? CStringGetTextDatum(it->code) : (Datum) 0;
		nulls[4] = it->code == NULL;
		v[5] = it->message ? CStringGetTextDatum(it->message) : (Datum) 0;
		nulls[5] = it->message == NULL;
		v[6] = BoolGetDatum(it->replayed);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}
